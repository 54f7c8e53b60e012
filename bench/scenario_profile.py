"""Where a scenario's seconds go: boots and restores, SSH round trips, QMP commands, the rest.

Runs each scenario file in its own pytest (one guest at a time, so nothing overlaps) with
memhp's DEBUG log, then splits the run's wall time by what the log shows; the rest is QMP
event waits, guest-side waits, pytest and the harness itself. The last line sums all files:

    .venv/bin/python bench/scenario_profile.py testcases/test_dimm.py testcases/test_virtio_mem.py
    .venv/bin/python bench/scenario_profile.py --kernel debian:6.12 testcases/*.py
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "%(created).6f %(name)s %(message)s"
SSH = re.compile(
    r"^(?P<t>[\d.]+) memhp\.ssh ssh (?P<cmd>.*) -> -?\d+ \(\d+ bytes, (?P<s>[\d.]+) s\)$"
)
QMP = re.compile(r"^(?P<t>[\d.]+) memhp\.qmp (?P<dir>[<>]) (?P<cmd>[\w-]+)")
GUEST = re.compile(r"^[\d.]+ memhp (?P<what>boot|restore): .*: done in (?P<s>[\d.]+) s$")


@dataclass
class Profile:
    scenarios: int = 0
    wall: float = 0.0
    guests: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    started: Counter[str] = field(default_factory=Counter)  # boot / restore: how many
    ssh: float = 0.0
    ssh_trips: int = 0
    ssh_kinds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    qmp: float = 0.0
    qmp_commands: int = 0

    def add_log(self, text: str) -> None:
        pending: dict[str, float] = {}
        for line in text.splitlines():
            if m := SSH.match(line):
                self.ssh += float(m["s"])
                self.ssh_trips += 1
                self.ssh_kinds[_kind(m["cmd"])] += float(m["s"])
            elif m := QMP.match(line):
                if m["dir"] == ">":
                    pending[m["cmd"]] = float(m["t"])
                elif m["cmd"] in pending:
                    self.qmp += float(m["t"]) - pending.pop(m["cmd"])
                    self.qmp_commands += 1
            elif m := GUEST.match(line):
                self.guests[m["what"]] += float(m["s"])
                self.started[m["what"]] += 1

    def add(self, other: Profile) -> None:
        self.scenarios += other.scenarios
        self.wall += other.wall
        for k, v in other.guests.items():
            self.guests[k] += v
        self.started += other.started
        self.ssh += other.ssh
        self.ssh_trips += other.ssh_trips
        for k, v in other.ssh_kinds.items():
            self.ssh_kinds[k] += v
        self.qmp += other.qmp
        self.qmp_commands += other.qmp_commands

    def row(self, name: str) -> str:
        guests = sum(self.guests.values())
        rest = self.wall - guests - self.ssh - self.qmp
        starts = f"{self.started['boot']} boots, {self.started['restore']} restores"
        return (
            f"| {name} | {self.scenarios} | {self.wall:.1f} | {guests:.1f} ({starts}) | "
            f"{self.ssh:.1f} ({self.ssh_trips} trips, {_per(self.ssh, self.ssh_trips)}) | "
            f"{self.qmp:.1f} ({self.qmp_commands}) | {rest:.1f} |"
        )


def _kind(cmd: str) -> str:
    """A command's first words, enough to tell a kpageflags read from a state read."""
    if "kpageflags" in cmd:
        return "kpageflags read"
    if cmd.startswith("cat /proc/zoneinfo"):
        return "effects state read"
    if "block_size_bytes" in cmd:
        return "memory-block layout"
    return " ".join(cmd.split()[:2])[:40]


def _per(total: float, n: int) -> str:
    return f"{1000 * total / n:.0f} ms each" if n else "-"


def profile(path: str, extra: list[str]) -> Profile:
    with tempfile.TemporaryDirectory() as tmp:
        log, results = Path(tmp) / "debug.log", Path(tmp) / "results"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            path,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
        ]
        cmd += ["--log-file", str(log), "--log-file-level", "DEBUG", "--log-file-format", FORMAT]
        cmd += ["--memhp-results", str(results), *extra]
        start = time.monotonic()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
        prof = Profile(wall=time.monotonic() - start)
        for record in (results / "records").glob("*.json"):
            prof.scenarios += json.loads(record.read_text()).get("status") in ("PASS", "FAIL")
        if log.exists():
            prof.add_log(log.read_text(errors="replace"))
        return prof


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--kernel", default="debian:6.12", metavar="SPEC")
    p.add_argument("--arch", default="x86_64")
    args = p.parse_args()
    extra = ["--memhp-arch", args.arch, "--memhp-kernel", args.kernel]
    print(f"{args.arch} {args.kernel}, one guest at a time, seconds")
    print("| file | scenarios | wall | boots + restores | SSH | QMP commands | rest |")
    print("|---|---|---|---|---|---|---|")
    total = Profile()
    for path in args.files:
        prof = profile(path, extra)
        total.add(prof)
        print(prof.row(Path(path).stem), flush=True)
    print(total.row("all"))
    print(
        "SSH time by command: "
        + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(total.ssh_kinds.items(), key=lambda kv: -kv[1])[:6]
        )
    )
    share = 100 * (total.ssh + total.qmp) / total.wall if total.wall else 0.0
    print(f"profile: {total.scenarios} scenarios, {total.wall:.1f} s, SSH + QMP {share:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
