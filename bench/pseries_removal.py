"""Count DIMM removal outcomes on pseries, per kernel and boot command line.

Each cycle hot-adds a DIMM (--lmbs, default 2), leaves its blocks as the kernel onlined
them, and asks QEMU to remove it: deleted, refused (guest error event), or no event
within the bound.
A guest that refused is replaced by a fresh one (QEMU keeps the pending request).

    .venv/bin/python bench/pseries_removal.py --kernel debian:6.12 --cycles 10
"""

from __future__ import annotations

import argparse
import collections
import sys

from harness import images
from harness.arch import PPC64LE
from harness.hotplug.records import Unplug
from harness.hotplug.vm import HotplugVM
from harness.progress import progress
from harness.qemu.machine import MachineConfig, QemuMachine

VARIANTS = {
    "default": ("memhp_default_state=offline",),
    "online_movable": ("memhp_default_state=online_movable",),
    "memmap_on_memory": ("memhp_default_state=offline", "memory_hotplug.memmap_on_memory=1"),
}


def cycles(
    image: images.Image, cmdline: tuple[str, ...], n: int, lmbs: int
) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    machine: QemuMachine | None = None
    try:
        for _ in range(n):
            if machine is None:
                machine = QemuMachine(MachineConfig(arch=PPC64LE, image=image, cmdline=cmdline))
                machine.start()
            vm = HotplugVM(machine)
            dimm = vm.plug_dimm(lmbs * PPC64LE.dimm_align)
            result = vm.unplug_dimm(dimm, timeout=20.0)
            seen[result.outcome.value] += 1
            if result.outcome is not Unplug.DELETED:
                machine.shutdown()
                machine = None
    finally:
        if machine is not None:
            machine.shutdown()
    return seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", action="append", metavar="SPEC")
    p.add_argument("--variant", action="append", choices=list(VARIANTS))
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--lmbs", type=int, default=2, help="DIMM size in LMBs (256 MiB each)")
    args = p.parse_args()
    progress.quiet = True
    for spec in args.kernel or ["debian:6.1", "debian:6.12"]:
        image = images.build(spec, PPC64LE)
        for name in args.variant or list(VARIANTS):
            seen = cycles(image, VARIANTS[name], args.cycles, args.lmbs)
            counts = ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
            print(
                f"{spec} ({image.release}) {name}, {args.lmbs} LMBs: {counts} of {args.cycles}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
