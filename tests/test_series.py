"""Series handling on a small real git repository: mbox parsing, KCIDB's patchset hash, and
a series that does not apply (reported by name, nothing left applied, user's tree untouched).
Building and booting a kernel tree is the nightly test (testcases/test_series_bisect.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness import kbuild
from harness.errors import UsageError
from harness.workflows.gittree import Worktree
from harness.workflows.gittree import output as git
from harness.workflows.series import parse_mbox, verify


@pytest.fixture
def repo(git_repo: Path) -> Path:
    r = git_repo
    (r / "mm").mkdir()
    for name in ("a", "b"):
        (r / f"mm/{name}.c").write_text(f"int {name};\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "base")
    git(r, "tag", "base")
    for n, name in enumerate(("a", "b"), 1):
        (r / f"mm/{name}.c").write_text(f"long {name};\n")
        git(r, "commit", "-qam", f"mm: widen {name} (patch {n})")
    return r


def mbox(repo: Path, out: Path, *extra: str) -> Path:
    git(
        repo,
        "format-patch",
        "-q",
        "--cover-letter",
        "--base=base",
        "-o",
        str(out),
        *extra,
        "base..main",
    )
    box = out.with_suffix(".mbox")
    box.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("*.patch"))))
    return box


def test_parse_mbox_orders_patches_and_finds_cover_and_base(repo: Path, tmp_path: Path) -> None:
    series = parse_mbox(mbox(repo, tmp_path / "s"))

    assert [p.title for p in series.patches] == ["mm: widen a (patch 1)", "mm: widen b (patch 2)"]
    assert series.cover is not None and "0/2" in series.cover.subject
    assert series.base_commit == git(repo, "rev-parse", "base")
    files = sorted((tmp_path / "s").glob("000[1-9]-*.patch"))
    # KCIDB: sha256sum *.patch | cut -c-64 | sha256sum
    sums = "".join(hashlib.sha256(f.read_bytes()).hexdigest() + "\n" for f in files)
    assert series.patchset_hash == hashlib.sha256(sums.encode()).hexdigest()


def test_mbox_without_patches_is_a_usage_error(tmp_path: Path) -> None:
    box = tmp_path / "x.mbox"
    box.write_text("From x Mon Sep 17 00:00:00 2001\nSubject: hello\n\nno diff here\n")
    with pytest.raises(UsageError, match="no patches"):
        parse_mbox(box)


def test_series_that_does_not_apply_is_reported_by_name_and_undone(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kbuild, "check_tools", lambda arch: None)  # nothing gets built
    box = mbox(repo, tmp_path / "s")
    # Upstream moved on from base in a way that conflicts with patch 2 only.
    git(repo, "checkout", "-q", "-b", "upstream", "base")
    (repo / "mm/b.c").write_text("short b;\n")
    git(repo, "commit", "-qam", "conflicting change")
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")

    result = verify(repo, box, base="upstream", arches=["x86_64"], out=tmp_path / "out")

    rows = result.rows
    assert [r.applied for r in rows] == [True, False]
    assert rows[1].title == "mm: widen b (patch 2)" and "mm/b.c" in rows[1].apply_error
    assert not rows[1].built and not result.ok
    assert "DID NOT APPLY" in result.table()
    wt = Worktree(repo)
    assert wt.head() == head, "worktree left half-applied"
    assert not (wt.gitdir() / "rebase-apply").exists()
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == status


def test_base_commit_missing_from_the_tree_says_what_to_do(repo: Path, tmp_path: Path) -> None:
    box = mbox(repo, tmp_path / "s")
    box.write_bytes(
        box.read_bytes().replace(
            git(repo, "rev-parse", "base").encode(), b"0123456789abcdef0123456789abcdef01234567"
        )
    )
    with pytest.raises(UsageError, match=r"base-commit 0123456789ab.*fetch it, or give --base"):
        verify(repo, box, arches=["x86_64"], out=tmp_path / "out")


def test_missing_compiler_is_usage_before_anything_is_applied(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mbox(repo, tmp_path / "s")
    head = git(repo, "rev-parse", "HEAD")
    monkeypatch.setattr(kbuild.shutil, "which", lambda tool: None if tool == "bison" else tool)

    with pytest.raises(UsageError, match="bison not found"):
        verify(repo, box, arches=["x86_64"], out=tmp_path / "out")

    assert git(repo, "rev-parse", "HEAD") == head
    assert not (tmp_path / "out").exists()
