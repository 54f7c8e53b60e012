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

from harness.errors import ConditionNotMet
from harness.guest.kpageflags import KPF
from harness.guest.memory import MemoryBlock, write_errno
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs_qemu("pc-dimm"),
    pytest.mark.needs_kernel("memory-hotremove", "dimm"),
]

OFFLINE_BOUND = 120  # seconds the guest's offline may take before `timeout` signals it
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
# busybox tail keeps its input's last line: 64 MiB of NULs, held, then freed; forever.
CHURN = (
    "while :; do head -c 67108864 /dev/zero | tail -c 67108864 >/dev/null; done "
    ">/dev/null 2>&1 </dev/null &"
)


@pytest.mark.memhp(fresh=True)
@pytest.mark.dmesg_allow(r"page dumped because|Offline failed|migrat")
def test_offline_under_load_with_hugetlb_and_thp(vm: HotplugVM) -> None:
    """The load is shown to be in the DIMM first (hugetlb pages, transparent huge pages of a
    running workload), then the kernel is judged on offlining under it."""
    thp = vm.guest.run(f"cat {THP_ENABLED}", check=False).stdout
    if "Hugepagesize" not in vm.guest.run("cat /proc/meminfo").stdout:
        pytest.skip("this kernel makes no hugetlb pages (CONFIG_HUGETLBFS is not set)")
    if "[never]" in thp or not thp:
        pytest.skip(f"this kernel makes no transparent huge pages ({THP_ENABLED}: {thp!r})")
    dimm = vm.plug_dimm(2 * vm.arch.dimm_align)
    blocks = vm.online(dimm, "online_movable")
    # hugetlb pages prefer movable memory (htlb_alloc_mask: a movable hstate)
    vm.guest.exercise("echo 64 > /proc/sys/vm/nr_hugepages")
    vm.guest.run(CHURN + " echo $! > /tmp/churn.pid")
    load = _load_in(vm, blocks)

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
    still = vm.guest.run("kill -0 $(cat /tmp/churn.pid)", check=False).status == 0
    vm.guest.run("kill $(cat /tmp/churn.pid); echo 0 > /proc/sys/vm/nr_hugepages", check=False)

    hung = [i for i, e in results.items() if e == -1]
    assert not hung, f"offline of memory{hung} did not finish in {OFFLINE_BOUND} s under {load}"
    odd = {i: e for i, e in results.items() if e not in (0, errno.EBUSY)}
    assert not odd, f"offline failed for a reason the documentation does not give: {odd}"
    assert any(e == 0 for e in results.values()), (
        f"no block of a movable DIMM could be offlined under {load}: {results}"
    )
    assert still, "the workload died while the blocks went offline (OOM?)"


def _load_in(vm: HotplugVM, blocks: list[MemoryBlock]) -> str:
    """What of the load sits in ``blocks``, said; ConditionNotMet when a part is missing."""
    try:  # the workload starts in the background: its first huge pages take a moment
        vm.guest.wait_until(
            "[ $(awk '/^AnonHugePages:/ {print $2}' /proc/meminfo) -gt 0 ]",
            timeout=30.0,
            what="transparent huge pages of the workload",
        )
    except AssertionError as exc:
        raise ConditionNotMet(f"set-up: {exc}") from exc
    flags = [vm.flags(b) for b in blocks]
    huge = sum(h.with_flag(KPF.HUGE) for h in flags)
    thp = sum(h.with_flag(KPF.THP) for h in flags)
    running = vm.guest.run("kill -0 $(cat /tmp/churn.pid)", check=False).status == 0
    said = f"{huge} hugetlb pages and {thp} THP pages in the DIMM, the workload running: {running}"
    if not (huge and thp and running):
        raise ConditionNotMet(f"set-up: the load is not in place: {said}")
    return said
