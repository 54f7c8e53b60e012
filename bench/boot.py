"""Boot to SSH-ready time, median of N boots, per kernel (and arch).

.venv/bin/python bench/boot.py --kernel debian:6.12 --kernel debian:6.1 --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import images
from harness.arch import ARCHES, get_arch
from harness.progress import progress
from harness.qemu.machine import MachineConfig, QemuMachine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", action="append", default=None, metavar="SPEC")
    p.add_argument("--arch", default="x86_64", choices=list(ARCHES))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print one JSON object per kernel")
    args = p.parse_args()
    arch = get_arch(args.arch)
    progress.quiet = True
    for spec in args.kernel or arch.default_kernels:
        image = images.build(spec, arch)
        times = []
        for _ in range(args.runs):
            with QemuMachine(MachineConfig(arch=arch, image=image)) as m:
                times.append(m.boot_seconds)
        result = {
            "arch": arch.name,
            "kernel": spec,
            "release": image.release,
            "accel": m.accel.name,
            "runs": [round(t, 2) for t in times],
            "median_s": round(statistics.median(times), 2),
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{arch.name} {spec} ({image.release}, {m.accel.name}): boot->SSH-ready "
                f"median {result['median_s']} s over {args.runs} runs {result['runs']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
