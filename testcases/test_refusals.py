"""QEMU's refusals: a DIMM QEMU will not plug is refused with QEMU's own message, over QMP,
and the guest does not notice (same memory blocks, same MemTotal, nothing in dmesg).

The messages are QEMU 7.2's (hw/mem/memory-device.c, hw/mem/pc-dimm.c, backends/hostmem.c).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from harness.errors import QMPCommandError
from harness.hotplug.vm import HotplugVM

pytestmark = [pytest.mark.needs_qemu("pc-dimm"), pytest.mark.needs_kernel("dimm")]

MiB, GiB = 1 << 20, 1 << 30


@pytest.fixture
def unaffected(vm: HotplugVM) -> Iterator[None]:
    """The guest's memory blocks and MemTotal are the same after the test as before."""
    before = vm.memory(), vm.mem_total()
    yield
    assert (vm.memory(), vm.mem_total()) == before, "a refused DIMM changed the guest"


def refused(plug: Callable[[], object], message: str) -> None:
    with pytest.raises(QMPCommandError, match=message) as exc:
        plug()
    assert exc.value.command in ("object-add", "device_add"), exc.value


def test_refused_dimm_of_size_zero(vm: HotplugVM, unaffected: None) -> None:
    refused(
        lambda: vm.plug_dimm(0, validate=False),
        re.escape("property 'size' of memory-backend-ram doesn't take value '0'"),
    )


def test_refused_dimm_at_a_misaligned_address(vm: HotplugVM) -> None:
    dimm = vm.plug_dimm(vm.arch.dimm_align)
    before = vm.memory(), vm.mem_total()

    refused(
        lambda: vm.plug_dimm(vm.arch.dimm_align, addr=dimm.addr + dimm.size + MiB),
        "address must be aligned to",
    )

    assert (vm.memory(), vm.mem_total()) == before


def test_refused_dimm_overlapping_another(vm: HotplugVM) -> None:
    dimm = vm.plug_dimm(vm.arch.dimm_align)
    before = vm.memory(), vm.mem_total()

    refused(
        lambda: vm.plug_dimm(vm.arch.dimm_align, addr=dimm.addr),
        f"address range conflicts with memory device id='{dimm.id}'",
    )

    assert (vm.memory(), vm.mem_total()) == before


def test_refused_dimm_in_a_node_that_does_not_exist(vm: HotplugVM, unaffected: None) -> None:
    refused(
        lambda: vm.plug_dimm(vm.arch.dimm_align, node=5),
        re.escape("'DIMM property node has value 5' which exceeds the number of numa nodes"),
    )


@pytest.mark.memhp(fresh=True)  # fills every slot: nobody else gets this guest
def test_refused_dimm_beyond_the_last_slot(vm: HotplugVM) -> None:
    slots = vm.machine.config.slots
    for _ in range(slots):
        vm.plug_dimm(vm.arch.dimm_align)
    before = vm.memory(), vm.mem_total()

    refused(lambda: vm.plug_dimm(vm.arch.dimm_align), "no free slots available")

    assert (vm.memory(), vm.mem_total()) == before
    assert len(vm.memory_devices()) == slots


def test_refused_dimm_beyond_maxmem(vm: HotplugVM, unaffected: None) -> None:
    too_big = vm.machine.config.maxmem  # plus boot memory: more than the device area holds
    refused(lambda: vm.plug_dimm(too_big), "not enough space|exceeds|would exceed")
