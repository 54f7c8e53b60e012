"""A virtio-mem resize: QEMU's throttled size-change event alone vs that event or qom-get
``size`` (harness.hotplug.devices.resize_virtio_mem), alternating in one guest so that load
and drift hit both alike. Each round grows the device by two blocks and shrinks it back
(``memhp_default_state=online_movable``: the guest onlines what it plugs). The last line is
the result::

    .venv/bin/python bench/virtio_mem_resize.py --kernel debian:6.12 --rounds 10
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable

from harness import images
from harness.arch import GiB, get_arch
from harness.hotplug import devices
from harness.hotplug.records import VirtioMem
from harness.hotplug.vm import HotplugVM
from harness.progress import progress
from harness.qemu import builds
from harness.qemu.machine import MachineConfig, QemuMachine
from harness.qemu.qmp import EventTimeout, event_is

Resize = Callable[[QemuMachine, VirtioMem, int], object]


def event_only(machine: QemuMachine, dev: VirtioMem, requested: int) -> object:
    """The old wait: the size-change event that reports exactly the request."""
    mark = machine.events.mark()
    machine.qmp("qom-set", {"path": dev.id, "property": "requested-size", "value": requested})
    devices.refresh_virtio_mem(machine, dev)
    if dev.size != requested:
        with contextlib.suppress(EventTimeout):
            machine.events.wait(
                event_is("MEMORY_DEVICE_SIZE_CHANGE", id=dev.id, size=requested),
                after=mark,
                timeout=60,
                what="size",
            )
    return devices.refresh_virtio_mem(machine, dev)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", default="debian:6.12", metavar="SPEC")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    arch = get_arch("x86_64")
    progress.quiet = True
    config = MachineConfig(
        arch=arch,
        image=images.build(args.kernel, arch),
        cmdline=("memhp_default_state=online_movable",),
        qemu=builds.resolve(arch.default_qemu, arch),
    )
    ways: dict[str, Resize] = {
        "event only (before)": event_only,
        "event or qom-get size (now)": lambda m, d, r: devices.resize_virtio_mem(m, d, r),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    with QemuMachine(config) as machine:
        vm = HotplugVM(machine)
        dev = vm.plug_virtio_mem(1 * GiB)
        block = vm.memory().block_size
        for _ in range(args.rounds):
            for name, resize in ways.items():
                for size in (2 * block, 0):
                    start = time.monotonic()
                    resize(machine, dev, size)
                    seconds[name].append(time.monotonic() - start)
                    assert dev.size == size, f"{name}: size {dev.size} after asking {size}"
    for name, values in seconds.items():
        print(
            f"{name}: {len(values)} resizes, median {statistics.median(values):.3f} s, "
            f"max {max(values):.3f} s"
        )
    before, now = (statistics.median(v) for v in seconds.values())
    print(f"virtio-mem resize: median {before:.3f} s before, {now:.3f} s now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
