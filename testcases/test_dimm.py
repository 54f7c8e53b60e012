"""pc-dimm hotplug, end to end: plug, online, offline, unplug, and the kernel's refusals.

Each test runs once per target (``--memhp-arch`` x ``--memhp-kernel``). Unless marked
otherwise, guests boot with the arch profile's scenario command line (x86:
``memhp_default_state=offline``, so a DIMM waits for the test to online it; pseries:
``online_movable``, as DLPAR onlines LMBs itself). What depends on the kernel comes from
``harness.hotplug.expectations`` and says why when it fails.
"""

from __future__ import annotations

import errno

import pytest

from harness.arch import GiB
from harness.errors import ConditionNotMet
from harness.guest.kpageflags import KPF
from harness.hotplug import expectations
from harness.hotplug.devices import OST_EJECT_REFUSED
from harness.hotplug.records import Dimm, Unplug
from harness.hotplug.vm import HotplugVM, pin_with_slab

pytestmark = [
    pytest.mark.needs_qemu("pc-dimm"),
    pytest.mark.needs_kernel("memory-hotremove", "dimm"),
]


def test_dimm_hot_add_blocks_match_qemu(vm: HotplugVM) -> None:
    """1. Hot-add 1 GiB: the guest acknowledges it and its blocks are QEMU's range."""
    dimm = vm.plug_dimm(1 * GiB)  # returns once the guest acknowledged (QMP event)
    layout = vm.memory()
    blocks = vm.blocks(dimm)

    assert [b.phys_index * layout.block_size for b in blocks] == list(
        range(dimm.addr, dimm.addr + dimm.size, layout.block_size)
    ), f"guest blocks {[b.index for b in blocks]} do not tile {dimm}"
    expected = expectations.hot_added_block_state(vm.facts)
    vm.expect_blocks(blocks, expected.value.state, expected.value.zone, why=expected.why)
    flags = expectations.page_flags(vm.facts, expected.value.state)
    vm.expect_flags(blocks, *flags.value, why=flags.why)
    zones = expectations.fresh_valid_zones(vm.facts)
    if expected.value.state == "offline" and zones.value is not None:
        seen = {b.index: b.valid_zones for b in blocks if b.valid_zones != zones.value}
        assert not seen, (
            f"valid_zones: expected {' '.join(zones.value)}, seen {seen}\n"
            f"  expectation: {zones.why}"
        )


def test_dimm_online_movable(vm: HotplugVM) -> None:
    """2. online_movable: Movable, MemTotal grows block by block, pages go to the buddy."""
    dimm = vm.plug_dimm(1 * GiB)
    blocks = vm.offline(dimm)  # pseries DLPAR onlined them already
    block_size = vm.memory().block_size

    before = vm.mem_total()
    assert vm.set_state(blocks[:1], "online_movable") == {blocks[0].index: 0}
    assert vm.mem_total() - before == block_size, "MemTotal did not grow by one block"
    blocks = vm.online(dimm, "online_movable")

    assert vm.mem_total() - before == dimm.size
    vm.expect_blocks(blocks, "online", "Movable")
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(blocks, *flags.value, why=flags.why)


@pytest.mark.memhp(fresh=True)  # kernel allocations land in Normal blocks: may not come back
def test_dimm_online_kernel(vm: HotplugVM) -> None:
    """3. online_kernel puts the blocks in ZONE_NORMAL."""
    dimm = vm.plug_dimm(1 * GiB)
    vm.offline(dimm)
    blocks = vm.online(dimm, "online_kernel")

    vm.expect_blocks(blocks, "online", "Normal")
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(blocks, *flags.value, why=flags.why)


def test_dimm_offline_again(vm: HotplugVM) -> None:
    """4. Offlining movable blocks again: NOPAGE everywhere, MemTotal back where it was."""
    dimm = vm.plug_dimm(1 * GiB)
    vm.offline(dimm)
    before = vm.mem_total()
    vm.online(dimm, "online_movable")

    blocks = vm.offline(dimm)

    vm.expect_blocks(blocks, "offline")
    flags = expectations.page_flags(vm.facts, "offline")
    vm.expect_flags(blocks, *flags.value, why=flags.why)
    assert vm.mem_total() == before


def test_dimm_remove(vm: HotplugVM) -> None:
    """5. Remove: blocks offline, device_del, DEVICE_DELETED, blocks gone, backend freed."""
    dimm = vm.plug_dimm(1 * GiB)
    vm.online(dimm, "online_movable")
    vm.offline(dimm)

    result = vm.unplug_dimm(dimm)

    assert result.outcome is Unplug.DELETED, result.describe()
    assert vm.blocks(dimm) == [], "memory blocks still present after DEVICE_DELETED"
    assert dimm.id not in vm.memory_devices()
    objects = {o["name"] for o in vm.machine.qmp("qom-list", {"path": "/objects"})}
    assert dimm.memdev not in objects, "object-del left the memory backend behind"


@pytest.mark.memhp(fresh=True)  # leaves a DIMM the guest will not give back
@pytest.mark.needs("normal-only-hotplugged")
@pytest.mark.dmesg_allow(r"page dumped because: unmovable page")
def test_dimm_remove_refused_when_pinned(vm: HotplugVM) -> None:
    """6. A ZONE_NORMAL block full of slab pages cannot be offlined: the eject is refused."""
    dimm = vm.plug_dimm(vm.arch.dimm_align)  # one block: all of ZONE_NORMAL
    blocks = vm.online(dimm, "online_kernel")
    # Boot RAM (1 GiB) is all DMA32, so new kernel allocations prefer this block: tmpfs
    # inodes and dentries are slab, which offlining cannot migrate.
    pinned = pin_with_slab(vm, blocks)

    result = vm.unplug_dimm(dimm, timeout=30.0)

    assert result.outcome is Unplug.REFUSED, result.describe()
    if vm.arch.acpi_memory_hotplug:
        status = result.event["data"]["info"]["status"] if result.event else None
        assert status in OST_EJECT_REFUSED, result.describe()
    vm.expect_blocks(vm.blocks(dimm), "online", "Normal", why=f"{pinned} slab pages pin it")
    assert dimm.id in vm.memory_devices(), "QEMU dropped a DIMM the guest refused to eject"


@pytest.mark.needs("isa-hole")
def test_dimm_memory0_refuses_offline(vm: HotplugVM) -> None:
    """7. memory0 holds the ISA hole: offlining it fails with EINVAL."""
    block0 = vm.memory().blocks[0]

    assert vm.set_state([block0], "offline") == {0: errno.EINVAL}
    assert vm.memory().blocks[0].online


@pytest.mark.memhp(cmdline=None, fresh=True)  # the kernel's own defaults
def test_dimm_default_online_policy(vm: HotplugVM) -> None:
    """8. Without memhp_default_state, the kernel's config decides what happens on plug."""
    policy = expectations.default_online_policy(vm.facts)
    seen = vm.guest.run("cat /sys/devices/system/memory/auto_online_blocks").stdout.strip()
    vm.expect(policy, seen)

    dimm = vm.plug_dimm(2 * vm.arch.dimm_align)

    expected = expectations.hot_added_block_state(vm.facts)
    vm.expect_blocks(vm.blocks(dimm), expected.value.state, expected.value.zone, why=expected.why)


# Removal while the blocks are online: the guest must offline them itself. Each setup puts
# the memmap where the outcome is known (harness.hotplug.expectations.dimm_unplug*).
UNPLUG_NOISE = (
    r"page dumped because|Offline failed|pseries-hotplug-mem|"
    r"Memory indexed-count-remove failed|dlpar"
)
MEMORYLESS_SECOND_NODE = (1 * GiB, 0)  # node 1: no memory, no CPU


def _remove_while_online(vm: HotplugVM, dimm: Dimm) -> None:
    vm.online(dimm, "online_movable")  # a no-op for blocks the kernel already onlined
    expected = expectations.dimm_unplug(vm.facts)

    result = vm.unplug_dimm(dimm, timeout=20.0)

    assert result.outcome is expected.value, f"unplug {result.describe()}; expected {expected}"
    assert vm.blocks(dimm) == [], "memory blocks still present after DEVICE_DELETED"


@pytest.mark.memhp(cmdline=("memhp_default_state=offline",), fresh=True)
@pytest.mark.dmesg_allow(UNPLUG_NOISE)
def test_dimm_remove_while_online(vm: HotplugVM) -> None:
    """9. device_del of a one-block DIMM with its block online: onlined movable by the test
    (x86), or Normal by DLPAR itself (pseries), its memmap allocated before it existed."""
    _remove_while_online(vm, vm.plug_dimm(vm.arch.dimm_align))


@pytest.mark.memhp(cmdline=("memhp_default_state=online_movable",))
def test_dimm_remove_while_online_movable_by_default(vm: HotplugVM) -> None:
    """10. Blocks onlined to ZONE_MOVABLE at add time come back out."""
    _remove_while_online(vm, vm.plug_dimm(2 * vm.arch.dimm_align))


# online_movable: pseries DLPAR would online to Normal, where any kernel page may land too
@pytest.mark.memhp(
    cmdline=("memhp_default_state=online_movable", "memory_hotplug.memmap_on_memory=1")
)
@pytest.mark.needs_kernel("memmap-on-memory")
def test_dimm_remove_while_online_memmap_on_memory(vm: HotplugVM) -> None:
    """11. With memmap_on_memory each block carries its own memmap and comes back out (two
    blocks where the kernel splits a DIMM's memmap per block, else one)."""
    blocks = 2 if vm.self_hosted_memmap(device_blocks=2).value.pages else 1
    memmap = vm.self_hosted_memmap(device_blocks=blocks)
    if not memmap.value.pages:
        pytest.skip(f"this kernel puts no memmap on the DIMM: {memmap.why}")
    dimm = vm.plug_dimm(blocks * vm.arch.dimm_align)
    vm.expect_memmap(vm.online(dimm, "online_movable"), memmap)
    _remove_while_online(vm, dimm)


@pytest.mark.memhp(
    cmdline=("memhp_default_state=offline",), numa=MEMORYLESS_SECOND_NODE, fresh=True
)
@pytest.mark.dmesg_allow(UNPLUG_NOISE)
def test_dimm_remove_refused_while_it_holds_a_later_memmap(vm: HotplugVM) -> None:
    """12. On a node with no memory of its own, a DIMM onlined to ZONE_NORMAL is where the
    memmap of the next DIMM on that node goes (vmemmap_populate: alloc_pages_node): the first
    cannot be offlined while the second is there, and its removal is refused."""
    first = vm.plug_dimm(vm.arch.dimm_align, node=1)
    vm.online(first, "online_kernel")  # pseries: DLPAR onlined it to Normal already
    before = _pages_in_use(vm, first)
    # 4 GiB on, the second DIMM's memmap needs vmemmap mappings of its own (one 2 MiB
    # mapping holds the memmap of 2 GiB of 64 KiB pages), allocated now.
    second = vm.plug_dimm(vm.arch.dimm_align, node=1, addr=first.addr + 4 * GiB)
    memmap = vm.memmap_pages(second.size)
    grew = _pages_in_use(vm, first) - before
    if grew < memmap:
        raise ConditionNotMet(
            f"set-up: {first} took only {grew} more pages in use when {second} was added, "
            f"less than its {memmap}-page memmap: the memmap went elsewhere"
        )
    expected = expectations.dimm_unplug_holding_memmap(vm.facts)

    result = vm.unplug_dimm(first, timeout=20.0)

    assert result.outcome is expected.value, f"unplug {result.describe()}; expected {expected}"
    if result.outcome is Unplug.REFUSED and vm.arch.acpi_memory_hotplug:
        status = result.event["data"]["info"]["status"] if result.event else None
        assert status in OST_EJECT_REFUSED, result.describe()
    vm.expect_blocks(vm.blocks(first), "online", "Normal", why=f"it holds {second.id}'s memmap")
    assert first.id in vm.memory_devices(), "QEMU dropped a DIMM the guest did not eject"


def _pages_in_use(vm: HotplugVM, dimm: Dimm) -> int:
    """Pages of the DIMM not free in the buddy allocator."""
    return sum(h.total - h.with_flag(KPF.BUDDY) for _, h in vm.histograms(vm.blocks(dimm)).values())
