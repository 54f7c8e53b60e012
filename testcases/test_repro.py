"""A failure you can hand on (nightly, with the kernel builds: ``pytest -m kbuild``): the
script memhp writes next to a failing scenario reproduces it without memhp. On a kernel
with one of the self-check's regressions it fails the same way (exit 1, the same check);
pointed at the unmutated kernel's image it passes (exit 0)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import images, kbuild
from harness.arch import X86_64
from harness.workflows import selfcheck

pytestmark = pytest.mark.kbuild

MUTANT = "present-off-by-one"  # online_pages() counts one page too few in present pages


def _run(script: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
    )


def test_repro_script_fails_on_the_mutant_and_passes_on_the_unmutated_kernel(
    kernel_tree: Path, tmp_path: Path
) -> None:
    result = selfcheck.run(kernel_tree, X86_64, tmp_path, only=MUTANT)
    [outcome] = result.outcomes
    assert outcome.caught_by, result.table()
    scripts = sorted((tmp_path / MUTANT / "repro").glob("*.sh"))
    assert scripts, f"no repro script for {outcome.caught_by}"
    script = scripts[0]

    mutant = _run(script)
    assert mutant.returncode == 1, mutant.stdout[-3000:] + mutant.stderr[-2000:]
    # the change online_pages() made to the zone's present pages, one page short
    assert "FAIL /proc/zoneinfo Node 0 Movable present: " in mutant.stdout, mutant.stdout
    assert "reproduced: the kernel fails as memhp saw" in mutant.stdout

    build_dir = kbuild.build(  # the unmutated kernel again (selfcheck restored the source)
        selfcheck.worktree(kernel_tree),
        X86_64,
        base="tinyconfig",
        out=selfcheck.build_dir_of(X86_64),
    )
    unmutated = images.build(f"build:{build_dir}", X86_64)
    fixed = _run(script, IMAGE=str(unmutated.path))
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]
    assert "OK   /proc/zoneinfo Node 0 Movable present: " in fixed.stdout, fixed.stdout
    assert "not reproduced: the kernel did what memhp expects" in fixed.stdout
