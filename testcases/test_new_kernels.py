"""Kernel lines nobody runs by default: every scenario on x86-64 Debian 6.17 and 6.18 and on
ppc64le Debian 7.2 (the newest builds the archive really gives) passes or skips naming what
the kernel or machine lacks. A harness that reads its expectations from the kernel's facts
needs nothing new for a new line: a FAIL here is either a bug the line really has (README:
Debian's last 6.17 and 6.18 builds have two) or a version rule or parser that guessed.
Long, so it carries the ``newkernels`` marker and runs with its own command (README: nightly):

    .venv/bin/pytest -m newkernels -s testcases/test_new_kernels.py
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.report.results import load
from harness.verdict import Status

pytestmark = pytest.mark.newkernels

ROOT = Path(__file__).resolve().parent.parent

# Lines Debian builds for the arch that the default matrix leaves out. amd64 6.19, 7.0 and
# 7.1 are not here: no index lists their modules package (an image of them is MISS).
NEW_KERNELS = {
    "x86_64": ("debian:6.17", "debian:6.18"),
    "ppc64le": ("debian:7.2",),
}


@pytest.mark.parametrize("arch", sorted(NEW_KERNELS))
def test_new_kernel_lines_pass_or_skip_with_a_reason(arch: str, tmp_path: Path) -> None:
    kernels = NEW_KERNELS[arch]
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
            "--memhp-results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    print(run.stdout[run.stdout.find("memhp scenarios") - 32 :])  # the matrix, for the log
    results = load(tmp_path)
    # Which build of each line ran (uname -r), for the log.
    print(sorted({(r.kernel, r.release) for r in results if r.release}))

    bad = [
        f"{r.kernel} {r.scenario}: {r.status.value} {r.message}"
        for r in results
        if r.status not in (Status.PASS, Status.SKIP)
    ]
    assert not bad, "\n".join(bad)
    unexplained = [
        f"{r.kernel} {r.scenario}" for r in results if r.status is Status.SKIP and not r.message
    ]
    assert not unexplained, unexplained
    counts = Counter((r.kernel, r.status.value) for r in results)
    print(dict(sorted(counts.items())))
    assert {k for k, _ in counts} == set(kernels), counts
    # Each line ran the same scenarios, and passed some: a line where everything skipped
    # has shown nothing.
    totals = Counter(r.kernel for r in results)
    assert len(set(totals.values())) == 1, totals
    assert all(counts[(k, Status.PASS.value)] > 0 for k in kernels), counts
    assert run.returncode == 0, run.stdout[-3000:]
