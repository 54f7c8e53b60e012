"""memmap_on_memory: a hot-added block carries its own memmap in its first pages.

Which blocks get one, and how those pages read in /proc/kpageflags, changed between
kernels (RESERVED|OWNER_PRIVATE on 6.1, OWNER_PRIVATE on 6.12); harness.hotplug.expectations says
which applies and why.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.hotplug import expectations
from harness.hotplug.records import Unplug
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs_qemu("pc-dimm"),
    pytest.mark.needs_kernel("memory-hotremove", "memmap-on-memory", "dimm"),
]

MEMMAP_ON_MEMORY = ("memory_hotplug.memmap_on_memory=1",)
MODES = [
    pytest.param("1", marks=pytest.mark.memhp(extra_cmdline=MEMMAP_ON_MEMORY), id="on"),
    # force pads the memmap to whole pageblocks (v6.6); before, the bool reads 'force' as N
    pytest.param(
        "force",
        marks=pytest.mark.memhp(extra_cmdline=("memory_hotplug.memmap_on_memory=force",)),
        id="force",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("blocks", [1, 2], ids=["one_block", "two_blocks"])
def test_memmap_on_memory_dimm(vm: HotplugVM, blocks: int, mode: str) -> None:
    """Each block of a DIMM starts with its memmap; the rest goes to the buddy; removal works."""
    block_size = vm.memory().block_size
    dimm = vm.plug_dimm(blocks * block_size)
    online = vm.online(dimm, "online_movable")
    expected = vm.self_hosted_memmap(device_blocks=blocks)

    vm.expect_memmap(online, expected)

    offline = vm.offline(dimm)
    flags = expectations.page_flags(vm.facts, "offline")
    vm.expect_flags(offline, *flags.value, why=flags.why)
    result = vm.unplug_dimm(dimm)
    assert result.outcome is Unplug.DELETED, result.describe()


@pytest.mark.memhp(extra_cmdline=MEMMAP_ON_MEMORY)
def test_memmap_on_memory_tells_kernels_apart(vm: HotplugVM) -> None:
    """The check fails when handed the other kernel generation's expectation."""
    mine = vm.self_hosted_memmap(device_blocks=1)
    if not mine.value.pages:
        pytest.skip(f"no self-hosted memmap here, nothing to tell apart: {mine.why}")
    dimm = vm.plug_dimm(vm.memory().block_size)
    online = vm.online(dimm, "online_movable")
    other = {"reserved": "offline", "offline": "reserved"}[expectations.memmap_init(vm.facts).value]
    swapped = dataclasses.replace(vm.facts, overrides={"memmap_init": other})

    vm.expect_memmap(online, mine)
    with pytest.raises(AssertionError, match="memmap_on_memory: expected"):
        vm.expect_memmap(online, vm.self_hosted_memmap(device_blocks=1, facts=swapped))
