"""Find the commit that broke a scenario: ``git bisect run`` over build + boot + scenarios.

Each step's verdict, as git bisect run wants it:

* a build failure or an infrastructure failure (QEMU died, VM lost, SSH never came), or a
  scenario that does not apply to that commit: skip (125) - it says nothing of the kernel;
* any scenario failure (a check, a panic, a dmesg splat) in any of the N repeats: bad (1);
* all N repeats pass: good (0).

The ends are checked first (bad must fail, good must pass) and the culprit is confirmed
after (it fails, its parent passes). Everything happens in memhp's worktree (gittree), so
the user's checkout is never moved.
"""

from __future__ import annotations

import enum
import json
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness import kbuild
from harness.arch import get_arch
from harness.errors import BuildError, MemhpError, UsageError
from harness.progress import progress
from harness.qemu import builds
from harness.verdict import Status
from harness.workflows.gittree import Worktree
from harness.workflows.runner import run_scenarios

STOP = 128  # git bisect run: abort the bisection


class Verdict(enum.IntEnum):
    GOOD = 0
    BAD = 1
    SKIP = 125  # git bisect run's "cannot test this commit"


@dataclass(frozen=True)
class StepConfig:
    """What one step does; passed to the ``memhp _bisect-step`` child as JSON."""

    tree: str  # the user's repository (the worktree is derived from it)
    arch: str
    select: str | None
    repeat: int
    kbuild_base: str | None
    out: str  # results of every step land under here
    accel: str | None = None
    qemu: str | None = None  # a QEMU spec; None: the host's
    workers: int = 1  # scenarios at a time

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> StepConfig:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class StepResult:
    commit: str
    verdict: Verdict
    why: str


def step(cfg: StepConfig, commit: str | None) -> StepResult:
    """Build ``commit`` (None: what git bisect checked out) and run the scenarios up to
    ``repeat`` times."""
    wt = Worktree(Path(cfg.tree))
    sha = wt.checkout(commit) if commit else wt.head()
    arch = get_arch(cfg.arch)
    short = f"{sha[:12]} {wt.subject(sha)[:60]}"
    try:
        build_dir = kbuild.build(wt.path, arch, base=cfg.kbuild_base)
    except (BuildError, kbuild.KconfigError) as exc:  # this commit cannot be tested
        return _log(StepResult(sha, Verdict.SKIP, f"{short}: build failed: {exc}"))
    for i in range(1, cfg.repeat + 1):
        run = run_scenarios(
            f"build:{build_dir}",
            cfg.arch,
            Path(cfg.out) / f"{sha[:12]}-{i}",
            select=cfg.select,
            accel=cfg.accel,
            qemu=cfg.qemu,
            workers=cfg.workers,
        )
        failed = [r for r in run.results if r.status is Status.FAIL]
        if failed:
            names = ", ".join(f"{r.scenario} ({r.message[:120]})" for r in failed)
            return _log(
                StepResult(sha, Verdict.BAD, f"{short}: run {i}/{cfg.repeat} failed: {names}")
            )
        if run.status is not Status.PASS:
            why = (
                "; ".join(
                    f"{r.scenario}: {r.status.value} {r.message[:120]}" for r in run.failures()
                )
                or "every scenario skipped"
            )
            return _log(
                StepResult(sha, Verdict.SKIP, f"{short}: run {i}/{cfg.repeat} inconclusive: {why}")
            )
    return _log(StepResult(sha, Verdict.GOOD, f"{short}: {cfg.repeat}/{cfg.repeat} runs passed"))


def _log(result: StepResult) -> StepResult:
    progress.note(f"bisect: {result.verdict.name.lower():<4} {result.why}")
    return result


@dataclass(frozen=True)
class Culprit:
    commit: str
    subject: str
    confirmed: str  # how the confirmation went
    log: str  # git bisect log


def bisect(cfg: StepConfig, good: str, bad: str) -> Culprit:
    wt = Worktree(Path(cfg.tree))
    kbuild.check_tools(get_arch(cfg.arch))  # a missing compiler is usage, before any step
    if cfg.qemu:
        builds.resolve(cfg.qemu, get_arch(cfg.arch))  # so is a QEMU that is not there
    with wt.locked():
        wt.reset_state()
        good_sha, bad_sha = wt.resolve(good), wt.resolve(bad)
        if not wt.is_ancestor(good_sha, bad_sha):
            raise UsageError(f"--good {good} is not an ancestor of --bad {bad}")
        _expect(step(cfg, bad_sha), Verdict.BAD, f"--bad {bad}")
        _expect(step(cfg, good_sha), Verdict.GOOD, f"--good {good}")
        culprit, log = _git_bisect_run(wt, cfg, good_sha, bad_sha)
        return Culprit(culprit, wt.subject(culprit), _confirm(cfg, culprit, wt), log)


def _git_bisect_run(wt: Worktree, cfg: StepConfig, good: str, bad: str) -> tuple[str, str]:
    """git bisect run with our step; its output streams to stderr as it goes."""
    try:
        wt.git("bisect", "start", bad, good)
        cmd = [sys.executable, "-m", "harness.cli", "_bisect-step", cfg.to_json()]
        proc = subprocess.run(
            ["git", "-C", str(wt.path), "bisect", "run", *cmd], stdout=sys.stderr, stderr=sys.stderr
        )
        log = wt.git("bisect", "log", check=False).stdout
        first = re.search(r"^# first bad commit: \[([0-9a-f]{40})\]", log, re.M)
        if proc.returncode != 0 or first is None:
            raise MemhpError(
                f"git bisect run stopped without a culprit (exit "
                f"{proc.returncode}); bisect log:\n{log}"
            )
        return first.group(1), log
    finally:
        wt.git("bisect", "reset", check=False)


def _confirm(cfg: StepConfig, culprit: str, wt: Worktree) -> str:
    """Run the culprit and its parent once more: fails, passes."""
    results = [step(cfg, culprit), step(cfg, wt.resolve(f"{culprit}^"))]
    if [r.verdict for r in results] == [Verdict.BAD, Verdict.GOOD]:
        return "confirmed: the culprit fails and its parent passes"
    return "NOT confirmed (a flaky scenario? try a larger --repeat): " + "; ".join(
        f"{r.commit[:12]} {r.verdict.name.lower()}" for r in results
    )


def _expect(result: StepResult, want: Verdict, what: str) -> None:
    if result.verdict is not want:
        raise UsageError(
            f"{what} should be {want.name.lower()} but is "
            f"{result.verdict.name.lower()}: {result.why}"
        )


def step_main(config_json: str) -> int:
    """``memhp _bisect-step``: the command git bisect run calls in the worktree."""
    cfg = StepConfig.from_json(config_json)
    try:
        return int(step(cfg, None).verdict)
    except MemhpError as exc:  # the harness itself cannot go on: stop the bisection
        print(f"memhp bisect step: {exc}", file=sys.stderr)
        return STOP
    except Exception:  # memhp's own bug must not read as "bad" (git bisect: exit 1)
        traceback.print_exc()
        print("memhp bisect step: internal error (a bug in memhp): stopping", file=sys.stderr)
        return STOP
