"""Unit tests for harness.qemu.snapshots' bound on saved boots: least recently used go first,
the one just saved stays, console logs go with their boot."""

from __future__ import annotations

import os
from pathlib import Path

from harness.qemu import snapshots


def _saved(d: Path, name: str, size: int, mtime: int) -> Path:
    mig = d / f"{name}.mig"
    mig.write_bytes(b"\0" * size)
    mig.with_suffix(".console").write_text("boot log")
    os.utime(mig, (mtime, mtime))
    return mig


def test_prune_drops_least_recently_used_until_the_rest_fit(tmp_path: Path) -> None:
    old, mid, new = (_saved(tmp_path, n, 100, t) for n, t in (("a", 1), ("b", 2), ("c", 3)))
    snapshots.used(old)  # restored just now: the most recently used

    gone = snapshots.prune(keep=new, budget=200)

    assert gone == [mid]
    assert not mid.exists() and not mid.with_suffix(".console").exists()
    assert old.exists() and new.exists()


def test_prune_keeps_the_boot_just_saved_even_over_budget(tmp_path: Path) -> None:
    big = _saved(tmp_path, "big", 500, 1)
    assert snapshots.prune(keep=big, budget=100) == []
    assert big.exists()


def test_used_on_a_pruned_boot_creates_nothing(tmp_path: Path) -> None:
    snapshots.used(tmp_path / "gone.mig")
    assert not (tmp_path / "gone.mig").exists()
