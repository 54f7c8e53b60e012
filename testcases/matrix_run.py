"""One child memhp run over a kernel matrix, and the nightly judgement of it: each scenario
passes, skips naming what the kernel or machine lacks, or fails by a known kernel bug that
names its fix. Shared by the flavours and new-kernels nightlies."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from harness.report.results import Result, load
from harness.verdict import Status

ROOT = Path(__file__).resolve().parent.parent


def run_matrix(
    arch: str, kernels: Sequence[str], results_dir: Path, qemus: Sequence[str] = ()
) -> list[Result]:
    """Every scenario on each kernel (crossed with each QEMU, default: the arch's), two
    workers, its table printed for the log. The child's exit status must agree with its
    records (0: nothing failed that is not known)."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "testcases",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            "--memhp-arch",
            arch,
            *(a for spec in kernels for a in ("--memhp-kernel", spec)),
            *(a for spec in qemus for a in ("--memhp-qemu", spec)),
            "--memhp-results",
            str(results_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    print(run.stdout[run.stdout.find("memhp scenarios") - 32 :])  # the table, for the log
    results = load(results_dir)
    assert_pass_skip_or_known(results, kernels)
    assert run.returncode == 0, run.stdout[-3000:]
    return results


def assert_pass_skip_or_known(results: Sequence[Result], kernels: Sequence[str]) -> None:
    bad = [
        f"{r.kernel} {r.scenario}: {r.status.value} {r.message}"
        for r in results
        if r.status not in (Status.PASS, Status.SKIP) and not (r.status is Status.FAIL and r.known)
    ]
    assert not bad, "\n".join(bad)
    unexplained = [
        f"{r.kernel} {r.scenario}" for r in results if r.status is Status.SKIP and not r.message
    ]
    assert not unexplained, unexplained
    counts = Counter((r.kernel, r.status.value) for r in results)
    print(dict(sorted(counts.items())))
    assert {k for k, _ in counts} == set(kernels), counts
