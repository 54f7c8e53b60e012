"""Reboot and reset with hot-plugged memory: after QMP system_reset, and after the guest's
own reboot, a hot-plugged DIMM is found again (ACPI enumerates it at boot; pseries lists its
LMBs as assigned) and onlines, and a resized virtio-mem device comes back to its requested
size (QEMU unplugs all of it on reset; the driver plugs it again).
"""

from __future__ import annotations

import pytest

from harness.arch import GiB
from harness.hotplug import expectations
from harness.hotplug.vm import HotplugVM

pytestmark = pytest.mark.needs_kernel("memory-hotremove")
REBOOTING = pytest.mark.memhp(reboot=True, fresh=True)


def _found_again_and_onlined(vm: HotplugVM) -> None:
    (dimm,) = vm.dimms
    blocks = vm.blocks(dimm)
    assert len(blocks) * vm.memory().block_size == dimm.size, (
        f"after the reboot the guest has blocks {[b.index for b in blocks]} of {dimm}"
    )
    if vm.arch.firmware_onlines_dimms:
        # pseries: the device tree lists the LMBs as assigned, so after the reboot they are
        # boot memory, online in Normal before userspace runs; their memmap and pages are
        # boot memory's, not a hot-add's, so the hot-add page-flag rule does not apply.
        vm.expect_blocks(blocks, "online", "Normal")
        return
    blocks = vm.online(dimm, "online_movable")
    vm.expect_blocks(blocks, "online", "Movable")
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(blocks, *flags.value, why=flags.why)


@REBOOTING
@pytest.mark.parametrize("how", ["system_reset", "guest_reboot"])
@pytest.mark.needs_qemu("pc-dimm")
@pytest.mark.needs_kernel("dimm")
def test_reboot_finds_the_hot_plugged_dimm_again(vm: HotplugVM, how: str) -> None:
    dimm = vm.plug_dimm(2 * vm.arch.dimm_align)
    vm.online(dimm, "online_movable")

    vm.reset() if how == "system_reset" else vm.reboot()

    _found_again_and_onlined(vm)


@REBOOTING
@pytest.mark.needs_qemu("virtio-mem")
@pytest.mark.needs_kernel("virtio-mem")
@pytest.mark.memhp(cmdline=("memhp_default_state=online_movable",), reboot=True, fresh=True)
def test_reset_brings_a_resized_virtio_mem_back_to_its_size(vm: HotplugVM) -> None:
    dev = vm.plug_virtio_mem(1 * GiB)
    block = vm.memory().block_size
    assert vm.resize(dev, block + block // 2).reached

    vm.reset()

    again = vm.resize(dev, block + block // 2, timeout=60.0)  # waits for the driver's replug
    assert again.reached, again.describe()
    vm.expect_blocks(vm.blocks(dev), "online", "Movable")
    vm.expect_virtio_mem(dev, was_online=False)
