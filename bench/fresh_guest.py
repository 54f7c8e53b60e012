"""A fresh guest: cold boot to SSH-ready vs restore of a saved boot to SSH-ready.

Boots and restores alternate in one run (so load and drift hit both alike); medians of N
each. The last line is the result:

    .venv/bin/python bench/fresh_guest.py --kernel debian:6.12 --runs 5
    .venv/bin/python bench/fresh_guest.py --arch ppc64le --kernel debian:6.12 --runs 5
    .venv/bin/python bench/fresh_guest.py --arch arm64 --kernel debian:6.12/cloud --runs 5
    .venv/bin/python bench/fresh_guest.py --arch s390x --kernel debian:7.2 --runs 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

from harness import images
from harness.arch import ARCHES, get_arch
from harness.progress import progress
from harness.qemu import builds
from harness.qemu.machine import MachineConfig, QemuMachine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", default="debian:6.12", metavar="SPEC")
    p.add_argument("--arch", default="x86_64", choices=list(ARCHES))
    p.add_argument("--qemu", metavar="SPEC", help="QEMU spec (default: the arch's)")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    arch = get_arch(args.arch)
    progress.quiet = True
    qemu = builds.resolve(args.qemu or arch.default_qemu, arch)
    config = MachineConfig(
        arch=arch,
        image=images.build(args.kernel, arch),
        cmdline=arch.scenario_cmdline,
        qemu=qemu,
    )
    boots, restores = [], []
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "boot.mig"
        with QemuMachine(config) as m:
            m.save(saved)
        for _ in range(args.runs):
            with QemuMachine(config) as m:
                boots.append(m.boot_seconds)
            with QemuMachine(dataclasses.replace(config, restore_from=saved)) as m:
                assert m.guest is not None and m.guest.run("true").status == 0
                restores.append(m.boot_seconds)
        size = saved.stat().st_size
    b, r = statistics.median(boots), statistics.median(restores)
    print(
        f"{arch.name} {args.kernel} on {qemu.identity}: boots {[round(t, 2) for t in boots]}, "
        f"restores {[round(t, 2) for t in restores]}, saved boot {size >> 20} MiB"
    )
    print(f"fresh guest: boot median {b:.2f} s, restore median {r:.2f} s, speedup {b / r:.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
