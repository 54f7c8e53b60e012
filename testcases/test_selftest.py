"""The kernel's own selftest, tools/testing/selftests/memory-hotplug/mem-on-off-test.sh from
the tree of the kernel under test, in the guest: it onlines every offline block (a DIMM is
plugged so there are some), offlines 2 % of the online ones (as its Makefile runs it, -r 2),
onlines them again, then repeats with memory-notifier-error-inject making MEM_GOING_ONLINE
and MEM_GOING_OFFLINE fail. Its exit status is the verdict: 0 pass, 4 (kselftest's SKIP)
skip, anything else the kernel's failure, with the script's output; an "unexpected" line it
printed fails too (it sets no exit status for some). A run that exits 0 before its error
injection part (no memory-notifier-error-inject) proved half of it: an ERROR, not a PASS.
"""

from __future__ import annotations

import base64

import pytest

from harness.errors import ConditionNotMet
from harness.hotplug import selftest
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs_qemu("pc-dimm"),
    pytest.mark.needs_kernel("memory-hotremove", "dimm"),
]


@pytest.mark.memhp(fresh=True)
@pytest.mark.dmesg_allow(
    r"Offline failed|offline.*failed|online_pages .*failed|"
    r"page dumped because|memory_notifier|notifier_error"
)
def test_kernel_selftest_mem_on_off(vm: HotplugVM) -> None:
    script, source = selftest.script_for(vm.image, vm.arch)
    if script is None:
        pytest.skip(f"no mem-on-off-test.sh for {vm.image.spec}: {source}")
    if vm.guest.run("command -v bash-static", check=False).status != 0:
        pytest.skip("the image has no bash-static (the selftest is a bash script)")
    vm.plug_dimm(4 * vm.arch.dimm_align)
    text = base64.b64encode(script.read_bytes()).decode()
    vm.guest.run(
        f"echo {text} | base64 -d > /tmp/mem-on-off-test.sh && "
        "mount -t debugfs none /sys/kernel/debug 2>/dev/null; true"
    )

    run = vm.guest.run(
        "cd /tmp && UID=0 bash-static ./mem-on-off-test.sh -r 2 2>&1", check=False, timeout=600
    )

    out = run.stdout
    if run.status == selftest.KSFT_SKIP:
        pytest.skip(f"the selftest skipped itself: {out.strip().splitlines()[-1:]}")
    unexpected = [ln for ln in out.splitlines() if "unexpected" in ln]
    assert run.status == selftest.KSFT_PASS and not unexpected, (
        f"mem-on-off-test.sh (from {source}) exited {run.status}"
        + (f", and said {unexpected[:5]}" if unexpected else "")
        + f":\n{out[-4000:]}"
    )
    if selftest.INJECTION not in out:  # it exits 0 early without memory-notifier-error-inject
        raise ConditionNotMet(
            f"set-up: the selftest ran without its notifier error injection: {out[-300:]!r}"
        )
