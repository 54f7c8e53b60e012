"""The auto-movable online policy (memory_hotplug.online_policy=auto-movable, from the series
"mm/memory_hotplug: "auto-movable" online policy and memory groups", v5.15): hot-added memory
onlined with plain `online` goes to ZONE_MOVABLE while all Movable memory stays within
auto_movable_ratio percent of the boot-time kernel memory, then to the kernel zone. The exact
layout follows from the kernel pages at boot (harness.hotplug.expectations.auto_movable_zones):
an ACPI DIMM is decided as a whole (a static memory group), a pseries LMB alone (no group),
and a virtio-mem device block by block, its own kernel blocks adding to the allowance.
"""

from __future__ import annotations

import pytest

from harness.arch import GiB
from harness.hotplug import expectations
from harness.hotplug.vm import HotplugVM

pytestmark = pytest.mark.needs_kernel("memory-hotremove")

AUTO = ("memhp_default_state=online", "memory_hotplug.online_policy=auto-movable")
KERNEL_ZONES = ("DMA", "DMA32", "Normal")


def kernel_pages(vm: HotplugVM) -> tuple[int, int]:
    """present_early_pages of the kernel zones (their present pages before any hotplug), and
    the CMA pages among them (Debian's arm64 kernels reserve a CMA area; x86's do not)."""
    zones = [z for (_, name), z in vm.guest.zones().items() if name in KERNEL_ZONES]
    return sum(z.present for z in zones), sum(z.cma for z in zones)


@pytest.mark.parametrize(
    "ratio",
    [
        pytest.param(301, marks=pytest.mark.memhp(cmdline=AUTO, fresh=True), id="ratio301"),
        pytest.param(
            100,
            marks=pytest.mark.memhp(
                cmdline=(*AUTO, "memory_hotplug.auto_movable_ratio=100"), fresh=True
            ),
            id="ratio100",
        ),
    ],
)
@pytest.mark.needs_qemu("pc-dimm")
@pytest.mark.needs_kernel("dimm")
def test_auto_movable_dimms_go_movable_up_to_the_ratio(vm: HotplugVM, ratio: int) -> None:
    early, cma = kernel_pages(vm)
    size = 1 * GiB
    dimms = [vm.plug_dimm(size) for _ in range(5)]  # each onlined by the policy as added
    layout = vm.memory()
    pages = layout.block_size // vm.guest.page_size()
    per_block = vm.arch.adds_per_block  # pseries: no memory group, each LMB on its own
    units = (
        [pages] * (5 * size // layout.block_size)
        if per_block
        else [size // vm.guest.page_size()] * 5
    )
    expected = expectations.auto_movable_zones(early, units, ratio=ratio, cma=cma)

    seen = [b.zone for d in dimms for b in vm.blocks(d)]
    if not per_block:
        seen = [z for i, z in enumerate(seen) if i % (size // layout.block_size) == 0]
        whole = {tuple(b.zone for b in vm.blocks(d)) for d in dimms}
        assert all(len(set(z)) == 1 for z in whole), f"a DIMM split across zones: {whole}"
    assert tuple(seen) == expected.value, (
        f"zones seen {seen}, expected {list(expected.value)}\n  expectation: {expected.why}"
    )


@pytest.mark.memhp(cmdline=AUTO, fresh=True)
@pytest.mark.needs_qemu("virtio-mem")
@pytest.mark.needs_kernel("virtio-mem")
def test_auto_movable_virtio_mem_grows_movable_then_one_normal_in_four(vm: HotplugVM) -> None:
    early, cma = kernel_pages(vm)
    dev = vm.plug_virtio_mem(4 * GiB)
    block = vm.memory().block_size
    count = 28  # past the first Normal block (the 25th with 1 GiB of boot memory)

    assert vm.resize(dev, count * block, timeout=120.0).reached

    expected = expectations.auto_movable_zones(
        early, [block // vm.guest.page_size()] * count, dynamic=True, cma=cma
    )
    seen = tuple(b.zone for b in vm.blocks(dev))
    assert seen == expected.value, (
        f"zones seen {''.join((z or '?')[0] for z in seen)}, expected "
        f"{''.join(z[0] for z in expected.value)}\n  expectation: {expected.why}"
    )
