"""virtio-mem across suspend to RAM: with VIRTIO_MEM_F_PERSISTENT_SUSPEND negotiated (QEMU
commit 1f5f49056d0f ("virtio-mem: Add support for suspend+wake-up with plugged memory") (in
QEMU v9.2.0), kernel commit e4544c550eb1 ("virtio-mem: support suspend+resume") (in v6.10))
plugged memory stays plugged over S3: same size, blocks, zones, counters and page flags
after the wakeup, the guest resumed and not booted anew; hibernation stays refused while
memory is plugged. Without the feature the kernel refuses S3 with plugged memory.
"""

from __future__ import annotations

import pytest

from harness.hotplug.records import VirtioMem
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs("s3"),
    pytest.mark.needs_qemu("virtio-mem"),
    pytest.mark.needs_kernel("virtio-mem", "suspend"),
]

SLEEPS = pytest.mark.memhp(cmdline=("memhp_default_state=online_movable",), fresh=True, sleeps=True)
PERSISTENT_SUSPEND = 2  # include/uapi/linux/virtio_mem.h: VIRTIO_MEM_F_PERSISTENT_SUSPEND
VIRTIO_ID_MEM = "0x0018"
NEGOTIATED = (
    "VIRTIO_MEM_F_PERSISTENT_SUSPEND needs QEMU 9.2+ (1f5f49056d0f) and a v6.10+ kernel "
    "(e4544c550eb1)"
)


def _plugged(vm: HotplugVM) -> tuple[VirtioMem, bool]:
    """A virtio-mem device with 1.5 blocks plugged, and whether the guest's driver and QEMU
    agreed on PERSISTENT_SUSPEND (the features the kernel accepted, in sysfs)."""
    dev = vm.plug_virtio_mem(1 << 30)
    block = vm.block_size
    assert vm.resize(dev, block + block // 2).reached
    features = vm.guest.run(
        "for d in /sys/bus/virtio/devices/*; do "
        f'[ "$(cat $d/device)" = {VIRTIO_ID_MEM} ] && cat $d/features; done'
    ).stdout.strip()
    return dev, len(features) > PERSISTENT_SUSPEND and features[PERSISTENT_SUSPEND] == "1"


@SLEEPS
@pytest.mark.dmesg_allow(r"hibernation is not supported")
def test_virtio_mem_keeps_plugged_memory_across_suspend(vm: HotplugVM) -> None:
    dev, persistent = _plugged(vm)
    if not persistent:
        pytest.skip(f"not negotiated: {NEGOTIATED}")
    before = vm.state()
    flags = vm.histograms(vm.blocks(dev))

    sleep = vm.suspend_to_ram()

    assert sleep.suspended and not sleep.errno, f"the guest did not go to S3: {sleep}"
    assert sleep.same_boot, "the wakeup booted the guest anew: nothing was kept over S3"
    after = vm.state()
    now = vm.virtio_mem(dev.id)
    assert now.size == dev.size, (
        f"QEMU reports {now.size >> 20} MiB plugged, {dev.size >> 20} before"
    )
    assert after.layout == before.layout, "memory blocks changed over S3"
    counts = {
        k: (before.zone(*k), after.zone(*k)) for k in before.zones.keys() | after.zones.keys()
    }
    assert all(b == a for b, a in counts.values()), f"zones (present, managed, spanned): {counts}"
    assert after.meminfo["MemTotal"] == before.meminfo["MemTotal"]
    assert vm.histograms(vm.blocks(dev)).keys() == flags.keys()
    vm.expect_virtio_mem(dev, was_online=False)
    if vm.facts.config.enabled("HIBERNATION"):
        refused = vm.guest.run("echo disk > /sys/power/state", check=False)
        assert refused.status != 0, "hibernation went ahead with virtio-mem memory plugged"
        assert any("hibernation is not supported" in ln for ln in vm.guest.dmesg())


@SLEEPS
@pytest.mark.dmesg_allow(
    r"suspending with plugged memory is not supported|save/restore not supported|"
    r"PM: .*failed|dpm_run_callback"
)
def test_suspend_with_plugged_memory_refused_without_persistent_suspend(vm: HotplugVM) -> None:
    dev, persistent = _plugged(vm)
    if persistent:
        pytest.skip(
            "PERSISTENT_SUSPEND was negotiated: S3 keeps plugged memory, as "
            "test_virtio_mem_keeps_plugged_memory_across_suspend checks"
        )

    sleep = vm.suspend_to_ram()

    assert not sleep.suspended and sleep.errno, f"the guest suspended with plugged memory: {sleep}"
    assert vm.virtio_mem(dev.id).size == dev.size
