"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cache
from harness.workflows.gittree import git


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git repository on branch main; memhp's cache (worktrees) under tmp_path."""
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    repo = tmp_path / "linux"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo
