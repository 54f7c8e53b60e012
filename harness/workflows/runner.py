"""Run the scenario suite against one kernel in a child pytest and read back its results.

A child process (not pytest.main in-process) so each run starts with a clean plugin state
and its own guest pool; its full output goes to a log file next to its results.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EXIT_INFRA, EXIT_USAGE, HarnessError, UsageError
from harness.progress import progress
from harness.report.results import RECORDS, Result, load, load_runs
from harness.resources import CHECKOUT, TESTCASES
from harness.scenarios import Selection
from harness.verdict import Status, worst


@dataclass(frozen=True)
class Run:
    results: list[Result]
    log: Path
    results_dir: Path

    @property
    def status(self) -> Status | None:
        return worst(r.status for r in self.results)

    @property
    def booted(self) -> bool:
        return any(r.release for r in self.results)

    def summary(self) -> str:
        counts = Counter(r.status.value for r in self.results)
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing ran"

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status not in (Status.PASS, Status.SKIP)]


def run_scenarios(
    kernel: str,
    arch: str,
    results_dir: Path,
    *,
    select: str | None = None,
    accel: str | None = None,
    qemu: str | None = None,
    files: tuple[str, ...] = (),
    workers: int = 0,
    maxfail: int = 0,
) -> Run:
    """Run testcases/ (or its ``files``) on ``kernel`` (a spec) for ``arch``, in ``workers``
    processes (pytest-xdist) when more than one, stopping after ``maxfail`` failures when
    given; results land in results_dir."""
    shutil.rmtree(results_dir / RECORDS, ignore_errors=True)  # a rerun into the same dir
    results_dir.mkdir(parents=True, exist_ok=True)
    selection = Selection(
        kernels=(kernel,),
        arches=(arch,),
        accel=accel,
        qemus=(qemu,) if qemu else (),
        results=results_dir,
        select=select,
        files=files,
        workers=workers,
        maxfail=maxfail,
    )
    cmd = [sys.executable, "-m", "pytest", "-q", *selection.pytest_args()]
    log = results_dir / "pytest.log"
    with (
        progress(
            f"scenarios: {arch} {kernel}"
            + (f" -k '{select}'" if select else "")
            + f", {max(1, workers)} at a time"
        ),
        log.open("w") as out,
    ):
        proc = subprocess.run(cmd, cwd=CHECKOUT or TESTCASES, stdout=out, stderr=subprocess.STDOUT)
    results = load(results_dir)
    interrupted = [r.interrupted_by for r in load_runs(results_dir) if r.interrupted_by]
    if interrupted:  # the signal reached this process too (its process group)
        raise KeyboardInterrupt(f"the scenarios were interrupted by {interrupted[0]}")
    if proc.returncode == EXIT_USAGE:
        raise UsageError(f"the scenarios refused their input: {_last_line(log)} (log: {log})")
    if proc.returncode in (4, 5) or (proc.returncode > 5 and proc.returncode != EXIT_INFRA):
        raise HarnessError(
            f"pytest could not run the scenarios (exit {proc.returncode}): "
            f"{_last_line(log)} (log: {log})"
        )
    if not results:
        raise UsageError(
            f"no scenario ran{f' for -k {select!r}' if select else ''} "
            f"(log: {log}): check the selection"
        )
    return Run(results, log, results_dir)


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E ", "ERROR", "pytest: error"))]
    return (errors or lines or ["no output"])[-1].strip()
