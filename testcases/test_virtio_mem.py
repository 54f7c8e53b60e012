"""virtio-mem: grow and shrink by sub-blocks; unplugged parts of an online block are
fake-offline (PageOffline), never handed to the buddy.

Sizes are in memory blocks of the guest (128 MiB on x86-64), so "1.5 blocks" leaves the
second block half plugged.
"""

from __future__ import annotations

import pytest

from harness.hotplug import expectations
from harness.hotplug.coldplug import VirtioMemSpec
from harness.hotplug.records import VirtioMem
from harness.hotplug.vm import HotplugVM, pin_with_slab

pytestmark = [pytest.mark.needs_qemu("virtio-mem"), pytest.mark.needs_kernel("virtio-mem")]

GiB = 1 << 30
ONLINE_MOVABLE = ("memhp_default_state=online_movable",)  # how virtio-mem is meant to run
COLD = VirtioMemSpec("vmem0", max_size=1 * GiB)


def _device(vm: HotplugVM, how: str) -> VirtioMem:
    return vm.virtio_mem(COLD.id) if how == "coldplugged" else vm.plug_virtio_mem(1 * GiB)


PLUGGED = [
    pytest.param(
        "coldplugged", marks=pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True, coldplug=(COLD,))
    ),
    pytest.param("hotplugged", marks=pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)),
]


@pytest.mark.parametrize("how", PLUGGED)
def test_virtio_mem_grow_leaves_partial_block(vm: HotplugVM, how: str) -> None:
    """Grow from 0 to 1.5 blocks: the half-plugged block's other half is OFFLINE|DIRTY."""
    dev = _device(vm, how)
    block_size = vm.memory().block_size
    before = vm.mem_total()
    mark = vm.machine.events.mark()

    resize = vm.resize(dev, block_size + block_size // 2)

    assert resize.reached, resize.describe()
    sizes = vm.reported_sizes(dev, mark, resize.requested)  # QEMU's events say it too
    assert sizes and sizes[-1] == resize.requested, f"size-change events: {sizes}"
    blocks = vm.blocks(dev)
    vm.expect_blocks(blocks, "online", "Movable")
    assert len(blocks) == 2, f"expected 2 memory blocks, saw {[b.index for b in blocks]}"
    vm.expect_virtio_mem(dev, was_online=False)
    assert vm.mem_total() - before == resize.requested


@pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)
def test_virtio_mem_shrink_fake_offlines_pages(vm: HotplugVM) -> None:
    """Shrink from 2 blocks to 0.5: unplugged pages go back to OFFLINE, MemTotal falls."""
    dev = _device(vm, "hotplugged")
    block_size = vm.memory().block_size
    assert vm.resize(dev, 2 * block_size).reached
    grown = vm.mem_total()

    resize = vm.resize(dev, block_size // 2)

    assert resize.reached, resize.describe()
    assert grown - vm.mem_total() == 2 * block_size - block_size // 2
    vm.expect_virtio_mem(dev, was_online=True)


@pytest.mark.memhp(cmdline=("memhp_default_state=online_kernel",), fresh=True)
@pytest.mark.needs("normal-only-hotplugged")
@pytest.mark.dmesg_allow(r"page dumped because|virtio_mem")
def test_virtio_mem_shrink_refused_when_pinned(vm: HotplugVM) -> None:
    """A Normal block full of slab cannot be unplugged: size stays above the request."""
    dev = _device(vm, "hotplugged")
    block_size = vm.memory().block_size
    assert vm.resize(dev, block_size).reached
    pinned = pin_with_slab(vm, vm.blocks(dev))

    resize = vm.resize(dev, 0, timeout=15.0)

    assert not resize.reached and resize.size > resize.requested, resize.describe()
    vm.expect_blocks(vm.blocks(dev), "online", "Normal", why=f"{pinned} slab pages pin it")


@pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)
def test_virtio_mem_device_del_by_qemu_version(vm: HotplugVM) -> None:
    """Once its size is 0, device_del is refused (QEMU < 8.1) or removes it (>= 8.1)."""
    dev = _device(vm, "hotplugged")
    block_size = vm.memory().block_size
    assert vm.resize(dev, block_size).reached
    assert vm.resize(dev, 0).reached

    result = vm.unplug_virtio_mem(dev)

    expected = expectations.virtio_mem_unplug(vm.facts)
    assert result.outcome in expected.value, f"{result.describe()} ({expected})"


@pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)
def test_virtio_mem_regrow_replugs_both_kinds_of_fake_offline(vm: HotplugVM) -> None:
    """Grow to 1.5 blocks (the second half never onlined: OFFLINE|DIRTY), shrink to 1.25 (a
    quarter unplugged after onlining: OFFLINE), grow to 2: both kinds go back to the buddy
    (virtio_mem_fake_online: PageDirty ones through generic_online_page, the others freed)."""
    dev = _device(vm, "hotplugged")
    block = vm.memory().block_size
    assert vm.resize(dev, block + block // 2).reached
    assert vm.resize(dev, block + block // 4).reached
    second = vm.flags(vm.blocks(dev)[1])
    page = vm.guest.page_size()
    never = expectations.virtio_mem_unplugged_flags(was_online=False)
    after_online = expectations.virtio_mem_unplugged_flags(was_online=True)
    assert second.exactly(never.value) == block // 2 // page, f"{second.summary()}: {never.why}"
    assert second.exactly(after_online.value) == block // 4 // page, (
        f"{second.summary()}: {after_online.why}"
    )
    before = vm.mem_total()

    regrown = vm.resize(dev, 2 * block)

    assert regrown.reached, regrown.describe()
    assert vm.mem_total() - before == 2 * block - (block + block // 4)
    blocks = vm.blocks(dev)
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(blocks, *flags.value, why=f"every sub-block plugged again: {flags.why}")


@pytest.mark.memhp(cmdline=ONLINE_MOVABLE, fresh=True)
@pytest.mark.dmesg_allow(r"virtio_mem")
def test_virtio_mem_unplug_online_off_keeps_online_memory(vm: HotplugVM) -> None:
    """With virtio_mem.unplug_online=N the driver unplugs only offline memory: a shrink of
    an online block is not satisfied until the parameter is back on."""
    param = "/sys/module/virtio_mem/parameters/unplug_online"
    dev = _device(vm, "hotplugged")
    block = vm.memory().block_size
    assert vm.resize(dev, block).reached
    vm.guest.run(f"echo N > {param}")

    held = vm.resize(dev, 0, timeout=10.0)
    vm.guest.run(f"echo Y > {param}")
    released = vm.resize(dev, 0, timeout=60.0)

    assert not held.reached and held.size == block, held.describe()
    assert released.reached, released.describe()


@pytest.mark.memhp(cmdline=(*ONLINE_MOVABLE, "virtio_mem.force_bbm=1"), fresh=True)
def test_virtio_mem_big_block_mode_plugs_whole_blocks(vm: HotplugVM) -> None:
    """virtio_mem.force_bbm=1: the driver plugs and unplugs whole big blocks (one memory
    block here), never sub-blocks, so a request of 1.5 blocks gets 1 and no page is ever
    fake-offline (virtio_mem_bbm_plug_request: nb_bb = diff / bb_size)."""
    param = vm.guest.run("cat /sys/module/virtio_mem/parameters/force_bbm").stdout.strip()
    assert param == "Y", f"force_bbm reads {param!r}: the command line did not reach virtio_mem"
    dev = _device(vm, "hotplugged")
    block = vm.memory().block_size
    before = vm.mem_total()

    partial = vm.resize(dev, block + block // 2, timeout=10.0)

    assert not partial.reached and partial.size == block, partial.describe()
    (only,) = vm.blocks(dev)
    vm.expect_blocks([only], "online", "Movable")
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags([only], *flags.value, why=f"big-block mode plugs whole blocks: {flags.why}")
    assert vm.resize(dev, 2 * block).reached
    assert vm.mem_total() - before == 2 * block

    shrunk = vm.resize(dev, block)

    assert shrunk.reached, shrunk.describe()
    assert len(vm.blocks(dev)) == 1, "the unplugged big block is offlined and removed"
    assert vm.mem_total() - before == block
