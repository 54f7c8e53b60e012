"""The arches beside x86-64 and ppc64le: every scenario on arm64 `virt` (ACPI through UEFI,
DIMMs through the GED) and on s390x `s390-ccw-virtio` (virtio-mem-ccw only) passes or
skips naming what the kernel, QEMU or machine lacks. Long (and on s390x, kernel builds),
so it carries the ``arches`` marker and runs with its own command (README: nightly):

    ./setup.sh --arches --kbuild && .venv/bin/pytest -m arches -s testcases/test_arches.py
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import debian_tree
from matrix_run import run_matrix

from harness import kbuild
from harness.arch import S390X
from harness.report.results import Result
from harness.verdict import Status

pytestmark = pytest.mark.arches

# arm64: Debian's generic flavour has no ACPI_HOTPLUG_MEMORY (its DIMM scenarios skip,
# naming it), cloud has; QEMU 10.0 for virtio-mem device_del (virt: QEMU 8.1+). 7.2 shows
# a known arm64 bug (harness/hotplug/known.py): its memmap_on_memory scenarios are XFAIL.
ARM64 = ("debian:6.1/cloud", "debian:6.12/cloud", "debian:7.2/cloud", "debian:6.12")
# s390x: no Debian s390x kernel has VIRTIO_MEM (its scenarios skip, naming it), so the
# lines that run them are Debian's own sources of 7.2 and 7.3 built with kconfigs/.
S390X_BINARIES = ("debian:6.12", "debian:7.2")
S390X_SOURCES = ("7.2", "7.3")


def _judge(results: list[Result], ran: tuple[str, ...]) -> None:
    print(sorted({(r.kernel, r.release, r.qemu) for r in results if r.release}))
    totals = Counter(r.kernel for r in results)
    assert len(set(totals.values())) == 1, totals  # every kernel ran the same scenarios
    passed = Counter(r.kernel for r in results if r.status is Status.PASS)
    assert all(passed[k] > 0 for k in ran), passed  # something was checked on each


def test_arm64_runs_every_scenario_that_applies(tmp_path: Path) -> None:
    results = run_matrix("arm64", ARM64, tmp_path, ("debian:10.0",))
    _judge(results, ARM64)


def test_s390x_runs_every_scenario_that_applies(tmp_path: Path) -> None:
    built = tuple(f"build:{kbuild.build(debian_tree(line), S390X)}" for line in S390X_SOURCES)
    results = run_matrix("s390x", (*built, *S390X_BINARIES), tmp_path)
    _judge(results, built)
