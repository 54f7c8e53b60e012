"""The developer's loop, timed: a command of a memhp checkout, its wall time, the CPU time of
everything it started (QEMU included: every process it waited for) and how many QEMU guests
were alive at once. Run the old and the new checkout side by side in one sitting; each run
appends a JSON line to --out and prints a table row::

    .venv/bin/python bench/loop.py --label "1ae9ac7 -n 2" --checkout /work/old \\
        --out loop.jsonl -- memhp run -n 2
    .venv/bin/python bench/loop.py --label now --checkout . --out loop.jsonl -- memhp run
    .venv/bin/python bench/loop.py --label now --checkout . --out loop.jsonl -- pytest -n 2

A bisect step (an mm/ file changed, the incremental build, one boot, one scenario), as
``git bisect run`` pays it per commit::

    .venv/bin/python bench/loop.py --label now --checkout . --out loop.jsonl \\
        --bisect-step ~/.cache/memhp/trees/linux-source-6.12 -- \\
        memhp run --arch x86_64 -k test_dimm_online_movable

(the step's build goes to ``--build-dir``, by default ``~/.cache/memhp/bench-bisect-x86_64``,
built warm first; the changed line is a comment in mm/memory_hotplug.c, restored afterwards).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import cache

HOTPLUG_C = "mm/memory_hotplug.c"


def qemus() -> int:
    """QEMU processes alive now (this machine runs nothing else while it benchmarks)."""
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().startswith("qemu-system"):
                count += 1
        except OSError:
            continue
    return count


def timed(argv: list[str], cwd: Path) -> dict[str, float]:
    """Wall and CPU seconds of ``argv`` and its descendants, and the QEMUs alive meanwhile."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append(qemus())

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc = subprocess.run(argv, cwd=cwd, check=False)
    wall = time.monotonic() - start
    done.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall": round(wall, 1),
        "cpu": round(cpu, 1),
        "status": proc.returncode,
        "qemus_max": max(samples, default=0),
        "qemus_mean": round(sum(samples) / len(samples), 1) if samples else 0.0,
    }


def bisect_step(tree: Path, out: Path, checkout: Path, command: list[str]) -> dict[str, float]:
    """Change a comment line of mm/memory_hotplug.c, build incrementally, run ``command``
    on the build; the source is restored afterwards (a new file: the tree may be hard-linked)."""
    path = tree / HOTPLUG_C
    original = path.read_text()
    memhp = str(checkout / ".venv/bin/memhp")
    build = [memhp, "kernel", "build", "--tree", str(tree), "--arch", "x86_64"]
    build += ["--base", "tinyconfig", "--out", str(out)]
    subprocess.run(build, check=True, cwd=checkout)  # warm: the build before the step
    try:
        path.unlink()
        path.write_text(original.replace("\n", f"\n/* memhp bench {time.time()} */\n", 1))
        start = time.monotonic()
        built = timed(build, checkout)
        ran = timed([memhp, *command[1:], "--kernel", f"build:{out}"], checkout)
    finally:
        path.unlink()
        path.write_text(original)
    return {
        "wall": round(time.monotonic() - start, 1),
        "build": built["wall"],
        "run": ran["wall"],
        "cpu": built["cpu"] + ran["cpu"],
        "status": ran["status"] or built["status"],
        "qemus_max": ran["qemus_max"],
        "qemus_mean": ran["qemus_mean"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True)
    p.add_argument("--checkout", type=Path, required=True, help="a memhp checkout with .venv")
    p.add_argument("--out", type=Path, required=True, help="JSON lines, one per run")
    p.add_argument("--bisect-step", type=Path, metavar="TREE")
    p.add_argument(
        "--build-dir",
        type=Path,
        default=cache.path("bench-bisect-x86_64"),
        help="the bisect step's build (default: in memhp's cache; give a warm one)",
    )
    p.add_argument("command", nargs="+", help="memhp ... or pytest ... (from the checkout)")
    args = p.parse_args()
    checkout = args.checkout.resolve()
    if args.bisect_step:
        row = bisect_step(args.bisect_step, args.build_dir, checkout, args.command)
    else:
        tool = str(checkout / ".venv/bin" / args.command[0])
        row = timed([tool, *args.command[1:]], checkout)
    record = {"label": args.label, "command": " ".join(args.command), **row, "at": time.time()}
    with args.out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(
        f"| {args.label} | `{record['command']}` | {row['wall'] / 60:.1f} min ({row['wall']} s) "
        f"| {row['cpu'] / 60:.1f} min | {row['qemus_max']} (mean {row['qemus_mean']}) "
        f"| {row['status']} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
