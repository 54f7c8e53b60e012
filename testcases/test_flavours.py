"""Every Debian flavour of the default kernel lines, on both arches: each scenario passes or
skips naming what the kernel lacks, never fails for a missing driver. Long (a dozen kernels),
so it carries the ``flavours`` marker and runs with its own command (README: nightly):

    .venv/bin/pytest -m flavours testcases/test_flavours.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matrix_run import run_matrix

from harness import cache
from harness.arch import ARCHES
from harness.errors import UsageError
from harness.images.apt import AptCache
from harness.images.specs import debian_candidates

pytestmark = pytest.mark.flavours


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
    run_matrix(arch, every_flavour(arch), tmp_path)
