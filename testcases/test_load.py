"""Offlining under load: while a workload keeps allocating and freeing anonymous memory
(transparent huge pages where the kernel makes them) and hugetlb pages sit in the movable
block, offlining that block migrates or dissolves what is in it and finishes in bounded time,
or fails for a reason Documentation/admin-guide/mm/memory-hotplug.rst gives (EBUSY for
unmovable pages; never a hang: offline_pages retries until a signal, so the command runs
under a timeout and a hang is the kernel's failure).
"""

from __future__ import annotations

import errno

import pytest

from harness.guest.kpageflags import KPF
from harness.guest.memory import write_errno
from harness.hotplug.vm import HotplugVM

pytestmark = pytest.mark.needs_kernel("memory-hotremove")

OFFLINE_BOUND = 120  # seconds the guest's offline may take before `timeout` signals it
# busybox tail keeps its input's last line: 64 MiB of NULs, held, then freed; forever.
CHURN = (
    "while :; do head -c 67108864 /dev/zero | tail -c 67108864 >/dev/null; done "
    ">/dev/null 2>&1 </dev/null &"
)


@pytest.mark.memhp(fresh=True)
@pytest.mark.dmesg_allow(r"page dumped because|Offline failed|migrat")
def test_offline_under_load_with_hugetlb_and_thp(vm: HotplugVM) -> None:
    dimm = vm.plug_dimm(2 * vm.arch.dimm_align)
    blocks = vm.online(dimm, "online_movable")
    hugepages = vm.guest.run("grep Hugepagesize /proc/meminfo", check=False).stdout
    if hugepages:  # hugetlb pages prefer movable memory (htlb_alloc_mask: movable hstate)
        vm.guest.run("echo 64 > /proc/sys/vm/nr_hugepages")
    vm.guest.run(CHURN + " echo $! > /tmp/churn.pid")
    in_block = sum(vm.flags(b).with_flag(KPF.HUGE) for b in blocks)

    results = {}
    for b in blocks:
        res = vm.guest.run(
            f"timeout {OFFLINE_BOUND} sh -c 'echo offline > "
            f"/sys/devices/system/memory/memory{b.index}/state'",
            check=False,
            timeout=OFFLINE_BOUND + 30,
        )
        results[b.index] = (
            0 if res.status == 0 else (-1 if res.status in (124, 143) else write_errno(res.stderr))
        )
    vm.guest.run("kill $(cat /tmp/churn.pid); echo 0 > /proc/sys/vm/nr_hugepages", check=False)

    hung = [i for i, e in results.items() if e == -1]
    assert not hung, f"offline of memory{hung} did not finish in {OFFLINE_BOUND} s under load"
    odd = {i: e for i, e in results.items() if e not in (0, errno.EBUSY)}
    assert not odd, f"offline failed for a reason the documentation does not give: {odd}"
    assert any(e == 0 for e in results.values()), (
        f"no block of a movable DIMM could be offlined under load ({in_block} hugetlb pages "
        f"were in it): {results}"
    )
