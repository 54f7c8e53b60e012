"""The bisect step's verdicts with the build and the scenario run faked (a real git repo):
build failure and infrastructure -> skip, any failing repeat -> bad, all repeats pass -> good.
The real thing (kernel tree, git bisect run, QEMU) is testcases/test_series_bisect.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness import kbuild
from harness.errors import BuildError, UsageError
from harness.report.results import Result
from harness.verdict import Status
from harness.workflows import bisection as bisect
from harness.workflows.gittree import output as git
from harness.workflows.runner import Run

REAL_BUILD, REAL_CHECK_TOOLS = kbuild.build, kbuild.check_tools


@pytest.fixture
def repo(git_repo: Path) -> Path:
    r = git_repo
    for n in range(3):
        (r / "state").write_text(f"{n}\n")
        git(r, "add", ".")
        git(r, "commit", "-qm", f"commit {n}")
    return r


def fake(
    monkeypatch: pytest.MonkeyPatch,
    outcomes: Callable[[str, int], Status],
    build_fails: bool = False,
) -> list[int]:
    """Builds 'succeed' unless told; run i of a commit returns outcomes(state, i)."""
    calls: list[int] = []

    def build(tree: Path, *_: object, **__: object) -> Path:
        if build_fails:
            raise BuildError("make bzImage failed: mm/x.c:1: error: boom")
        return tree

    def run(kernel: str, arch: str, out: Path, **_: object) -> Run:
        calls.append(1)
        state = (Path(kernel.removeprefix("build:")) / "state").read_text().strip()
        status = outcomes(state, len(calls))
        r = Result(
            nodeid="t::test_x[x]",
            scenario="test_x",
            arch=arch,
            kernel=kernel,
            status=status,
            phase="call",
            start_time=0.0,
            duration=1.0,
            message=f"{status.value} on {state}",
        )
        return Run([r], out / "log", out)

    monkeypatch.setattr(bisect.kbuild, "build", build)
    monkeypatch.setattr(bisect.kbuild, "check_tools", lambda arch: None)
    monkeypatch.setattr(bisect, "run_scenarios", run)
    return calls


def config(repo: Path, tmp_path: Path, repeat: int = 3) -> bisect.StepConfig:
    return bisect.StepConfig(
        tree=str(repo),
        arch="x86_64",
        select="test_x",
        repeat=repeat,
        kbuild_base=None,
        out=str(tmp_path / "out"),
    )


def test_all_repeats_pass_is_good(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake(monkeypatch, lambda state, i: Status.PASS)
    assert bisect.step(config(repo, tmp_path), "HEAD").verdict is bisect.Verdict.GOOD
    assert len(calls) == 3


def test_one_failing_repeat_is_bad(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(monkeypatch, lambda state, i: Status.FAIL if i == 2 else Status.PASS)
    res = bisect.step(config(repo, tmp_path), "HEAD")
    assert res.verdict is bisect.Verdict.BAD and "run 2/3 failed" in res.why


@pytest.mark.parametrize("status", [Status.ERROR, Status.MISS])
def test_infrastructure_failure_skips(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: Status
) -> None:
    fake(monkeypatch, lambda state, i: status)
    assert bisect.step(config(repo, tmp_path), "HEAD").verdict is bisect.Verdict.SKIP


def test_build_failure_skips(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, lambda state, i: Status.PASS, build_fails=True)
    res = bisect.step(config(repo, tmp_path), "HEAD~1")
    assert res.verdict is bisect.Verdict.SKIP and "error: boom" in res.why


def test_bad_end_that_passes_stops_before_bisecting(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake(monkeypatch, lambda state, i: Status.PASS)
    with pytest.raises(UsageError, match="--bad HEAD should be bad but is good"):
        bisect.bisect(config(repo, tmp_path, repeat=1), "HEAD~2", "HEAD")
    assert git(repo, "status", "--porcelain") == ""


def test_usage_error_in_a_step_is_not_a_skip(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad input (here: a tree that is no kernel tree) stops; it never reads as "this
    commit cannot be tested"."""
    fake(monkeypatch, lambda state, i: Status.PASS)
    monkeypatch.setattr(bisect.kbuild, "build", REAL_BUILD)
    with pytest.raises(UsageError, match="is not a kernel source tree"):
        bisect.step(config(repo, tmp_path), "HEAD")


def test_missing_compiler_stops_before_any_step(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake(monkeypatch, lambda state, i: Status.PASS)
    monkeypatch.setattr(bisect.kbuild, "check_tools", REAL_CHECK_TOOLS)
    monkeypatch.setattr(kbuild.shutil, "which", lambda tool: None if tool == "gcc" else tool)
    with pytest.raises(UsageError, match="gcc not found"):
        bisect.bisect(config(repo, tmp_path, repeat=1), "HEAD~2", "HEAD")
    assert calls == [], "a step ran before the missing compiler was found"


def test_harness_bug_in_a_step_stops_the_bisection(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """git bisect run reads exit 1 as "bad": a KeyError in memhp must stop it instead."""

    def broken(*_: object, **__: object) -> bisect.StepResult:
        raise KeyError("memhp_target")

    monkeypatch.setattr(bisect, "step", broken)
    assert bisect.step_main(config(repo, tmp_path).to_json()) == bisect.STOP
    assert "bug in memhp" in capsys.readouterr().err
