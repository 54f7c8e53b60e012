"""NVDIMM: pmem namespaces, devdax, ZONE_DEVICE page flags, dax kmem as System RAM, and
two NVDIMMs sharing one memory section (sub-section hotplug).

Inside the guest: Debian's ndctl for namespaces; the kmem driver is bound through sysfs.
QEMU cannot unplug NVDIMMs, so every test gets its own guest.
"""

from __future__ import annotations

import pytest

from harness.guest import kpageflags
from harness.hotplug import expectations, ndctl
from harness.hotplug.coldplug import NvdimmSpec
from harness.hotplug.records import Nvdimm, Unplug
from harness.hotplug.vm import HotplugVM

pytestmark = [pytest.mark.needs_qemu("nvdimm"), pytest.mark.needs_kernel("nvdimm")]

MiB = 1 << 20
OFFLINE = ("memhp_default_state=offline",)
COLD = NvdimmSpec("nvdimm0", size=512 * MiB)

PLUGGED = [
    pytest.param(
        "coldplugged", marks=pytest.mark.memhp(cmdline=OFFLINE, fresh=True, coldplug=(COLD,))
    ),
    pytest.param("hotplugged", marks=pytest.mark.memhp(cmdline=OFFLINE, fresh=True)),
]


def _nvdimm(vm: HotplugVM, how: str, size: int = 512 * MiB) -> Nvdimm:
    return vm.nvdimm(COLD.id) if how == "coldplugged" else vm.plug_nvdimm(size)


def _devdax(vm: HotplugVM) -> tuple[ndctl.Namespace, ndctl.Namespace]:
    """A hot-plugged NVDIMM's namespace, and the same reconfigured to devdax."""
    dev = _nvdimm(vm, "hotplugged")
    ns = ndctl.namespace(vm.guest, ndctl.region_at(vm.guest, dev.addr))
    dax = ndctl.reconfigure(vm.guest, ns.dev, "devdax")
    assert dax.chardev, dax
    return ns, dax


@pytest.mark.parametrize("how", PLUGGED)
@pytest.mark.needs_kernel("dimm")  # a DIMM raises max_pfn above the device
def test_nvdimm_raw_namespace_has_no_memmap(vm: HotplugVM, how: str) -> None:
    """A raw namespace: /dev/pmemN spans the device and reads; raw pmem gets no struct
    pages at all (no pfn device), so its pfns are not online memory in /proc/kpageflags."""
    dev = _nvdimm(vm, how)
    region = ndctl.region_at(vm.guest, dev.addr)
    ns = ndctl.namespace(vm.guest, region, mode="raw")
    assert ns.mode == "raw" and ns.blockdev, ns

    size = int(vm.guest.run(f"cat /sys/block/{ns.blockdev}/size").stdout) * 512
    assert size == ns.size, f"/dev/{ns.blockdev} is {size} bytes, namespace {ns.size}"
    vm.guest.exercise(f"dd if=/dev/{ns.blockdev} of=/dev/null bs=64k count=16 2>/dev/null")
    vm.plug_dimm(vm.arch.dimm_align)  # raises max_pfn above the device (see devdax below)
    vm.expect_no_memmap(
        ns.start, ns.size, why="raw pmem has no memmap (no pfn device, no devm_memremap_pages)"
    )


@pytest.mark.parametrize("how", PLUGGED)
@pytest.mark.needs("pmem-writes")
def test_nvdimm_pmem_reads_back_what_was_written(vm: HotplugVM, how: str) -> None:
    """The guest sees the region and a namespace; /dev/pmemN keeps what is written to it."""
    dev = _nvdimm(vm, how)
    region = ndctl.region_at(vm.guest, dev.addr)
    ns = ndctl.namespace(vm.guest, region)
    assert ns.blockdev, f"{ns.dev} has no block device (mode {ns.mode})"

    vm.guest.run("dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null")
    vm.guest.exercise(
        f"dd if=/tmp/pattern of=/dev/{ns.blockdev} bs=64k seek=7 conv=fsync "
        f"2>/dev/null && dd if=/dev/{ns.blockdev} bs=64k skip=7 count=16 2>/dev/null "
        f"| cmp - /tmp/pattern"
    )


@pytest.mark.memhp(cmdline=OFFLINE, fresh=True)
@pytest.mark.needs_kernel("devdax", "dimm")  # a DIMM raises max_pfn above the device
@pytest.mark.needs("pmem-writes")  # the namespace's info block is written through pmem
def test_nvdimm_devdax_pfns_have_no_online_memmap(vm: HotplugVM) -> None:
    """devdax: ZONE_DEVICE pfns are never online memory in /proc/kpageflags."""
    dev = _nvdimm(vm, "hotplugged")
    ns = ndctl.namespace(vm.guest, ndctl.region_at(vm.guest, dev.addr))

    dax = ndctl.reconfigure(vm.guest, ns.dev, "devdax")

    assert dax.chardev and dax.mode == "devdax", dax
    assert ndctl.has_chardev(vm.guest, dax.chardev), f"no /dev/{dax.chardev}"
    # Whether the devdax range raised max_pfn (x86 stopped that in commit 7170130e4c72,
    # v6.15, backported to some stable lines; powerpc always does) is observed, not looked
    # up by version: either every pfn of the range reads, or none does.
    pfns = dax.size // vm.guest.page_size()
    before = vm.guest.kpageflags(kpageflags.pfn_range(dax.start, dax.size, vm.guest.page_size()))
    assert len(before) in (0, pfns), (
        f"{len(before)} of {pfns} devdax pfns readable: max_pfn ends inside the device"
    )
    # A DIMM plugged above the device does raise max_pfn (add_pages), making every one of
    # its pfns readable.
    vm.plug_dimm(vm.arch.dimm_align)
    vm.expect_no_memmap(
        dax.start, dax.size, why="ZONE_DEVICE sections are never onlined (pagemap_range)"
    )


@pytest.mark.memhp(cmdline=OFFLINE, fresh=True)
@pytest.mark.needs_kernel("devdax", "kmem")
@pytest.mark.needs("pmem-writes")
def test_nvdimm_kmem_system_ram(vm: HotplugVM) -> None:
    """dax kmem (kmem driver bound through sysfs): blocks come up offline, online movable to
    BUDDY, offline again to no memmap."""
    _, dax = _devdax(vm)

    ram = ndctl.to_system_ram(vm.guest, dax.chardev)

    blocks = vm.blocks(ram)
    assert blocks, f"no memory blocks for System RAM (kmem) {ram}"
    vm.expect_blocks(blocks, "offline", why="memhp_default_state=offline")
    offline = expectations.page_flags(vm.facts, "offline")
    vm.expect_flags(blocks, *offline.value, why=offline.why)
    assert not any(vm.set_state(blocks, "online_movable").values())
    blocks = vm.blocks(ram)
    vm.expect_blocks(blocks, "online", "Movable")
    online = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(blocks, *online.value, why=online.why)
    assert not any(vm.set_state(blocks, "offline").values())
    vm.expect_flags(vm.blocks(ram), *offline.value, why=offline.why)


@pytest.mark.memhp(cmdline=OFFLINE, fresh=True)
def test_nvdimm_unplug_rejected_by_qemu(vm: HotplugVM) -> None:
    """QEMU does not support NVDIMM unplug: device_del fails with its message."""
    dev = _nvdimm(vm, "hotplugged")

    result = vm.machine_unplug(dev.id, dev.memdev)

    assert result.outcome is Unplug.REJECTED, result.describe()
    assert "not supported" in result.error


@pytest.mark.memhp(cmdline=OFFLINE, fresh=True)
@pytest.mark.needs_kernel("devdax")
@pytest.mark.needs("nvdimm-subsection", "pmem-writes")
def test_nvdimm_two_in_one_section_both_usable(vm: HotplugVM) -> None:
    """Two 64 MiB NVDIMMs inside one 128 MiB section: both namespaces work as devdax
    (sub-section hotplug; before it, devm_memremap_pages "attempted on mixed region")."""
    section = 128 * MiB
    first = vm.plug_nvdimm(64 * MiB)  # QEMU puts it at the start of device memory (4 GiB)
    second = vm.plug_nvdimm(64 * MiB, addr=first.addr + 64 * MiB)
    assert first.addr // section == second.addr // section, (first, second)

    daxes = []
    for dev in (first, second):
        ns = ndctl.namespace(vm.guest, ndctl.region_at(vm.guest, dev.addr))
        daxes.append(ndctl.reconfigure(vm.guest, ns.dev, "devdax"))

    for dax in daxes:
        assert dax.mode == "devdax" and dax.chardev, dax
        assert ndctl.has_chardev(vm.guest, dax.chardev), f"no /dev/{dax.chardev}"
    mixed = [ln for ln in vm.guest.dmesg() if "mixed region" in ln]
    assert not mixed, mixed


@pytest.mark.memhp(cmdline=OFFLINE, fresh=True)
@pytest.mark.needs_kernel("devdax", "kmem")
@pytest.mark.needs("pmem-writes")
def test_nvdimm_kmem_round_trip(vm: HotplugVM) -> None:
    """devdax -> System RAM -> online (the namespace cannot be disabled under it) -> offline
    -> devdax again, with no trace of the System RAM left (ndctl's daxctl-devices.sh, done
    through sysfs)."""
    ns, dax = _devdax(vm)
    ram = ndctl.to_system_ram(vm.guest, dax.chardev)
    blocks = vm.blocks(ram)
    assert not any(vm.set_state(blocks, "online_movable").values())

    refused = ndctl.disable_namespace(vm.guest, ns.dev)

    assert refused.status != 0, f"disable-namespace succeeded under online System RAM: {refused}"
    assert not any(vm.set_state(vm.blocks(ram), "offline").values())
    assert ndctl.to_devdax(vm.guest, dax.chardev) == 0
    assert vm.blocks(ram) == [], "kmem's memory blocks stayed after it was unbound"
    assert ndctl.has_chardev(vm.guest, dax.chardev), f"no /dev/{dax.chardev} after the rebind"
    assert "System RAM (kmem)" not in vm.guest.run("cat /proc/iomem").stdout
