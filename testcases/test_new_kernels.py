"""Kernel lines nobody runs by default: every scenario on x86-64 Debian 6.17 and 6.18 and on
ppc64le Debian 7.2 (the newest builds the archive really gives) passes or skips naming what
the kernel or machine lacks. A harness that reads its expectations from the kernel's facts
needs nothing new for a new line: a FAIL here is either a bug the line really has (README:
Debian's last 6.17 and 6.18 builds have two) or a version rule or parser that guessed.
Long, so it carries the ``newkernels`` marker and runs with its own command (README: nightly):

    .venv/bin/pytest -m newkernels -s testcases/test_new_kernels.py
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from matrix_run import run_matrix

from harness.verdict import Status

pytestmark = pytest.mark.newkernels

# Lines Debian builds for the arch that the default matrix leaves out. amd64 6.19, 7.0 and
# 7.1 are not here: no index lists their modules package (an image of them is MISS).
NEW_KERNELS = {
    "x86_64": ("debian:6.17", "debian:6.18"),
    "ppc64le": ("debian:7.2",),
}


@pytest.mark.parametrize("arch", sorted(NEW_KERNELS))
def test_new_kernel_lines_pass_or_skip_with_a_reason(arch: str, tmp_path: Path) -> None:
    kernels = NEW_KERNELS[arch]
    results = run_matrix(arch, kernels, tmp_path)
    # Which build of each line ran (uname -r), for the log.
    print(sorted({(r.kernel, r.release) for r in results if r.release}))
    # Each line ran the same scenarios, and passed some: a line where everything skipped
    # has shown nothing.
    totals = Counter(r.kernel for r in results)
    assert len(set(totals.values())) == 1, totals
    passed = Counter(r.kernel for r in results if r.status is Status.PASS)
    assert all(passed[k] > 0 for k in kernels), passed
