"""Kernel build times: full (cold or warm ccache, whatever the machine has) and no-change
rebuild, per arch, for a tree configured with kconfigs/.

    .venv/bin/python bench/kbuild.py --tree ~/.cache/memhp/trees/linux-source-6.12 \\
        --arch x86_64
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from harness import kbuild
from harness.arch import ARCHES, get_arch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, required=True)
    p.add_argument("--arch", default="x86_64", choices=list(ARCHES))
    p.add_argument("--base", help="defconfig, tinyconfig or FILE (default: the arch's)")
    p.add_argument("--fresh", action="store_true", help="delete the build dir first")
    args = p.parse_args()
    arch = get_arch(args.arch)
    out = kbuild.default_build_dir(args.tree, arch)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    for label in ("build", "no-change rebuild"):
        start = time.monotonic()
        kbuild.build(args.tree, arch, base=args.base)
        print(
            f"{arch.name} {args.base or 'default base'} {label}: {time.monotonic() - start:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
