"""memhp's own git worktree of a user's kernel repository.

Series and bisect work never touch the user's checkout, branch or index: they happen in a
detached worktree in memhp's cache (``git worktree list`` in the repository shows it; ``git
worktree remove`` drops it). The worktree is kept between runs so that moving between
commits rewrites only the files that differ and kernel builds stay incremental.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from harness import cache
from harness.errors import UsageError

IDENTITY = ("-c", "user.name=memhp", "-c", "user.email=memhp@localhost")


class GitError(UsageError):
    """A git command failed; the message is git's own."""


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "-C", str(cwd), *IDENTITY, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(f"git {' '.join(args[:2])} in {cwd}: {msg[-1] if msg else 'failed'}")
    return proc


def output(cwd: Path, *args: str) -> str:
    """A git command's stdout, stripped; GitError when it fails."""
    return git(cwd, *args).stdout.strip()


def toplevel(tree: Path) -> Path:
    proc = git(tree, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise UsageError(
            f"{tree} is not a git repository: series and bisect need the kernel as a git tree"
        )
    return Path(proc.stdout.strip())


class Worktree:
    """A detached worktree of ``repo`` under memhp's cache, one per repository."""

    def __init__(self, repo: Path) -> None:
        self.repo = toplevel(repo)
        key = hashlib.sha256(str(self.repo).encode()).hexdigest()[:12]
        self.path = cache.path("worktrees", f"{self.repo.name}-{key}")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One memhp series/bisect at a time per worktree (they move its HEAD)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + ".lock").open("w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(
                    f"another memhp series/bisect is using {self.path} (the "
                    f"worktree of {self.repo}): wait for it to finish"
                ) from None
            yield

    def resolve(self, rev: str) -> str:
        proc = git(self.repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False)
        if proc.returncode != 0:
            raise UsageError(f"{rev}: no such commit in {self.repo}")
        return proc.stdout.strip()

    def is_ancestor(self, a: str, b: str) -> bool:
        return git(self.repo, "merge-base", "--is-ancestor", a, b, check=False).returncode == 0

    def subject(self, rev: str) -> str:
        return git(self.repo, "log", "-1", "--format=%s", rev).stdout.strip()

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return git(self.path, *args, check=check)

    def checkout(self, rev: str) -> str:
        """Detach the worktree at ``rev`` (creating it the first time); its commit hash."""
        sha = self.resolve(rev)
        if (self.path / ".git").exists() and self.git(
            "rev-parse", "--git-dir", check=False
        ).returncode != 0:
            shutil.rmtree(self.path)  # orphaned (its repository was moved or re-created)
        if not (self.path / ".git").exists():
            git(self.repo, "worktree", "prune")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git(self.repo, "worktree", "add", "--detach", "--force", str(self.path), sha)
            return sha
        self.git("checkout", "-q", "--detach", "--force", sha)
        return sha

    def reset_state(self) -> None:
        """Abandon anything a previous, interrupted run left (an am or a bisect)."""
        if not (self.path / ".git").exists():
            return
        self.git("am", "--abort", check=False)
        if (
            self.git("rev-parse", "-q", "--verify", "refs/bisect/bad", check=False).returncode == 0
            or (self.gitdir() / "BISECT_START").exists()
        ):
            self.git("bisect", "reset", check=False)

    def gitdir(self) -> Path:
        return Path(self.git("rev-parse", "--absolute-git-dir").stdout.strip())

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()
