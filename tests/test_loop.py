"""The developer's loop without guests: how many workers, which idle guests the pool keeps,
and what the status line says."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from harness import workers
from harness.arch import X86_64
from harness.plugin.pool import Boot, Pool
from harness.plugin.status import Standing
from harness.preflight import Target
from harness.verdict import Status

GiB = 1 << 30


class FakeMachine:
    def __init__(self) -> None:
        self.ended = False

    def shutdown(self) -> None:
        self.ended = True


def _pool(keys: list[tuple[Target, Boot]]) -> tuple[Pool, dict[Any, FakeMachine]]:
    pool = Pool(None, None)  # type: ignore[arg-type]  # trim needs neither
    machines = {k: FakeMachine() for k in keys}
    pool.shared.update(machines)  # type: ignore[arg-type]
    return pool, machines


A, B = Target(X86_64, "debian:6.1"), Target(X86_64, "debian:6.12")
PLAIN, NUMA, REBOOT = Boot((), None), Boot((), None, numa=(1, 1)), Boot((), None, reboot=True)


def test_pool_keeps_the_next_scenarios_guest_and_one_more_of_its_target() -> None:
    pool, m = _pool([(A, PLAIN), (A, NUMA), (A, REBOOT), (B, PLAIN)])  # least recent first

    pool.trim((A, NUMA), limit=1)

    assert list(pool.shared) == [(A, NUMA), (A, REBOOT)]  # the next one's and the newest other
    assert m[(A, PLAIN)].ended and m[(B, PLAIN)].ended  # the oldest; another target's
    assert not m[(A, NUMA)].ended and not m[(A, REBOOT)].ended


def test_pool_ends_every_idle_guest_after_the_last_scenario() -> None:
    pool, m = _pool([(A, PLAIN), (B, PLAIN)])
    pool.trim(None, limit=5)
    assert not pool.shared and all(x.ended for x in m.values())


def test_workers_are_the_cores_unless_memory_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(workers, "mem_available", lambda: 24 * GiB)
    assert workers.choose(None).count == 4
    monkeypatch.setattr(workers, "mem_available", lambda: 9 * GiB)
    assert workers.choose(None).count == 2  # 4 GiB a worker
    monkeypatch.setattr(workers, "mem_available", lambda: 1 * GiB)
    assert workers.choose(None).count == 1
    chosen = workers.choose(3)
    assert chosen.count == 3 and chosen.describe() == "3 scenarios at a time (-n)"


@pytest.mark.parametrize("text", ["0", "-2", "auto", ""])
def test_workers_refuse_what_is_not_a_count(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number of workers"):
        workers.positive(text)


def test_idle_limit_refuses_what_is_not_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import UsageError

    monkeypatch.setenv("MEMHP_IDLE_GUESTS", "many")
    with pytest.raises(UsageError, match="MEMHP_IDLE_GUESTS='many'"):
        workers.idle_limit()


def test_status_line_counts_failures_by_class_and_estimates_from_last_time() -> None:
    s = Standing(selected=5, workers=2, started=0.0)
    s.before = {"t::a": 10.0, "t::b": 20.0, "t::c": 30.0, "t::d": 40.0}
    s.done, s.running, s.waiting = 2, ["t::c"], ["t::d", "t::e"]
    s.worst = {"t::a": Status.FAIL, "t::b": Status.ERROR}

    assert s.left() == (30 + 40 + 25) / 2  # e has no record: the mean of the others
    line = s.render(200)
    assert line.startswith("memhp 2/5 done | 1 FAIL 1 ERROR 0 MISS | ")
    assert line.endswith("| ~0m47s left | now: c")
    assert len(s.render(30)) == 30 and s.render(30).endswith("...")


def test_status_line_has_no_estimate_before_anything_is_known() -> None:
    s = Standing(selected=3, workers=1)
    assert s.left() is None and "left" not in s.render(200)


@pytest.mark.parametrize(
    "argv", [["run", "-n", "0"], ["run", "--repeat", "-1"], ["report"], ["nosuch"]]
)
def test_refused_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)

    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "error:" in err, err
