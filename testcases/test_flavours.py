"""Every Debian flavour of the default kernel lines, on both arches: each scenario passes or
skips naming what the kernel lacks, never fails for a missing driver. Long (a dozen kernels),
so it carries the ``flavours`` marker and runs with its own command (README: nightly):

    .venv/bin/pytest -m flavours testcases/test_flavours.py
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness import cache
from harness.arch import ARCHES
from harness.errors import UsageError
from harness.images.apt import AptCache
from harness.images.specs import debian_candidates
from harness.report.results import load
from harness.verdict import Status

pytestmark = pytest.mark.flavours

ROOT = Path(__file__).resolve().parent.parent


def every_flavour(arch: str) -> list[str]:
    """Every flavour of each default line that Debian builds for the arch, as its indexes
    list them (bookworm has no ppc64el 64k flavour, so there is no debian:6.1/64k). A build
    that is listed but cannot be downloaded stays in: that is an archive gap to report."""
    profile = ARCHES[arch]
    apt = AptCache(cache.path("apt", profile.debian_arch), profile.debian_arch)
    apt.update()
    specs = []
    for spec in profile.default_kernels:
        for suffix in ("", *(f"/{f}" for f in sorted(profile.flavours))):
            try:
                debian_candidates(spec + suffix, profile, apt)
            except UsageError as exc:
                print(f"{arch}: not built by Debian, left out: {exc}")
                continue
            specs.append(spec + suffix)
    return specs


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_every_flavour_passes_or_skips_with_a_reason(arch: str, tmp_path: Path) -> None:
    flavours = every_flavour(arch)
    kernels = [a for spec in flavours for a in ("--memhp-kernel", spec)]
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
            *kernels,
            "--memhp-results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    print(run.stdout[run.stdout.find("memhp scenarios") - 32 :])  # the table, for the log
    results = load(tmp_path)

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
    assert {k for k, _ in counts} == set(flavours), counts
    assert run.returncode == 0, run.stdout[-3000:]
