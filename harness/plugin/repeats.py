"""--memhp-repeat N: a failing scenario is run N more times, each on a fresh guest, so that
the report can say whether it fails every time (a regression to bisect) or some of the
times (flaky: a race in the kernel, or in the harness).

The reruns are one child pytest per round, with this run's own arguments plus the failing
node ids (``--memhp-only``), fresh guests (``--memhp-fresh-guests``) and a results directory
of their own under this run's (``repeats/round-K``); each failing record then carries its
reruns' statuses (``Result.repeats``) into KCIDB, JUnit and ``memhp report compare``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.progress import progress
from harness.report.results import load, load_runs
from harness.verdict import Status

REPEATS_DIR = "repeats"


def rerun(
    config: pytest.Config, failing: list[str], rounds: int, results_dir: Path | None
) -> dict[str, list[str]]:
    """Each of ``failing`` (node ids) run ``rounds`` times more; their statuses per node id,
    in round order. A signal ends the repeating: what finished counts, what did not (MISS)
    does not (Result.repeat_summary)."""
    statuses: dict[str, list[str]] = {n: [] for n in failing}
    with tempfile.TemporaryDirectory(prefix="memhp-repeat-") as tmp:
        only = Path(tmp) / "only"
        only.write_text("\n".join(failing) + "\n")
        base = results_dir / REPEATS_DIR if results_dir else Path(tmp)
        for k in range(1, rounds + 1):
            out = base / f"round-{k}"
            try:
                with progress(f"repeat {k}/{rounds}: {len(failing)} failing, fresh guests"):
                    _child(config, only, out, len(failing))
            except KeyboardInterrupt:  # the child got the signal too and wound down
                break
            for r in load(out):
                if r.nodeid in statuses:
                    statuses[r.nodeid].append(r.status.value)
            if any(run.interrupted_by for run in load_runs(out)):
                break
    return statuses


def _child(config: pytest.Config, only: Path, out: Path, count: int) -> None:
    """This run again on the scenarios in ``only``; later options override earlier ones."""
    args = [
        *config.invocation_params.args,
        "--memhp-only",
        str(only),
        "--memhp-fresh-guests",
        "--memhp-repeat",
        "0",
        "--memhp-results",
        str(out),
        "--junitxml",
        str(out / "junit.xml"),
        "-p",
        "no:cacheprovider",
    ]
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1:
        args += ["-n", str(min(workers, count))]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "pytest.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "pytest", *args],
            cwd=config.invocation_params.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )


def failing(statuses: dict[str, Status]) -> list[str]:
    """The node ids to repeat: a scenario run that failed (FAIL) or erred (ERROR)."""
    return [n for n, s in statuses.items() if s in (Status.FAIL, Status.ERROR) and "::" in n]
