"""virtio-mem with dynamic-memslots=on (QEMU 8.2+, commit 177f9b1ee464 ("virtio-mem: Expose
device memory dynamically via multiple memslots if enabled")): QEMU splits the device's
memory into memslots (1 GiB each here) and maps one only while the guest has plugged memory
in it. The guest must see the same memory as without: each resize reaches its size, the
plugged pages are online memory and the unplugged ones fake-offline, and data written into
the device reads back; and QEMU's mapped memslots are exactly those holding plugged memory.
"""

from __future__ import annotations

import pytest

from harness.arch import GiB, MiB
from harness.errors import ConditionNotMet
from harness.guest.kpageflags import KPF
from harness.hotplug import devices
from harness.hotplug.records import VirtioMem
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs_qemu("virtio-mem.dynamic-memslots"),
    pytest.mark.needs_kernel("virtio-mem"),
]

ONLINE_MOVABLE = ("memhp_default_state=online_movable",)
DEVICE = 4 * GiB  # four memslots of 1 GiB (QEMU's smallest memslot)
# Grow across memslots, into a third, shrink back into the first, unplug everything.
SIZES = (1536 * MiB, 2304 * MiB, 512 * MiB, 0)
FILL = "/tmp/fill"  # a tmpfs of its own: /tmp's stops at half of the boot RAM
PATTERN = f"{FILL}/pattern"
COPIES = 8  # 8 x 32 MiB in tmpfs, movable pages: ZONE_MOVABLE (the device) comes first


def _memslots_with_plugged_memory(vm: HotplugVM, dev: VirtioMem, mapped: list[range]) -> set[int]:
    """The memslot starts (as QEMU maps them) holding a block the guest has: a virtio-mem
    block is there while any of its sub-blocks is plugged."""
    size = len(mapped[0]) if mapped else GiB
    bs = vm.block_size
    return {dev.addr + (b.phys_index * bs - dev.addr) // size * size for b in vm.blocks(dev)}


@pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)
def test_virtio_mem_dynamic_memslots_follow_the_plugged_memory(vm: HotplugVM) -> None:
    dev = vm.plug_virtio_mem(DEVICE, dynamic_memslots=True)
    assert devices.memslots(vm.machine, dev) == [], "memslots mapped before anything was plugged"

    for requested in SIZES:
        resize = vm.resize(dev, requested, timeout=120.0)

        assert resize.reached, resize.describe()
        mapped = devices.memslots(vm.machine, dev)
        holding = _memslots_with_plugged_memory(vm, dev, mapped)
        assert {r.start for r in mapped} == holding, (
            f"at {requested >> 20} MiB QEMU maps memslots at "
            f"{[hex(r.start) for r in mapped]}, the guest has plugged memory in "
            f"{sorted(hex(a) for a in holding)}"
        )
        if requested:
            vm.expect_virtio_mem(dev, was_online=True)
        if requested == SIZES[1]:
            _data_survives_in(vm, dev)


def _data_survives_in(vm: HotplugVM, dev: VirtioMem) -> None:
    """Write copies of a pattern into tmpfs, show pages of the device hold them, read every
    copy back."""
    vm.guest.run(
        f"mkdir -p {FILL} && mount -t tmpfs -o size=3g fill {FILL} && "
        f"dd if=/dev/urandom of={PATTERN} bs=1M count=32 2>/dev/null && "
        f"for i in $(seq {COPIES}); do cp {PATTERN} {FILL}/copy$i || exit; done"
    )
    used = sum(h.with_flag(KPF.LRU) for _, h in vm.histograms(vm.blocks(dev)).values())
    if not used:
        raise ConditionNotMet("set-up: none of the copies landed in the device's memory")
    bad = vm.guest.run(
        f"for i in $(seq {COPIES}); do cmp -s {PATTERN} {FILL}/copy$i || echo $i; done; "
        f"umount {FILL}"
    ).stdout.split()
    assert not bad, (
        f"copies {bad} read back different from what was written ({used} pages in the device)"
    )
