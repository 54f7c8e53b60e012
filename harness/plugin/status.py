"""Where a run stands, on the controller: done of selected, failures so far by class, the
scenarios running now, time elapsed and an estimate of what is left.

On a terminal it is one line, redrawn as tests start and end, in place of pytest's letters
(progress lines and failures print above it); elsewhere (CI logs) it is a plain line at each
tenth of the run. The estimate weighs the scenarios still to run by what they took last time
(memhp's cache keeps every test's duration), split over the workers.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import cache
from harness.plugin.verdicts import KNOWN_ATTR, status_of
from harness.progress import progress
from harness.verdict import PRIORITY, Status

COUNTED = (Status.FAIL, Status.ERROR, Status.MISS)


def durations_file() -> Path:
    return cache.path("durations.json")


@dataclass
class Standing:
    """The numbers the line shows; ``render`` is pure, for the tests."""

    selected: int
    workers: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    worst: dict[str, Status] = field(default_factory=dict)  # node id -> its worst so far
    running: list[str] = field(default_factory=list)
    took: dict[str, float] = field(default_factory=dict)  # node id -> seconds, this run
    before: dict[str, float] = field(default_factory=dict)  # node id -> seconds, last time
    waiting: list[str] = field(default_factory=list)  # selected, not started yet

    def left(self) -> float | None:
        """Seconds still to go: the waiting and running tests' recorded durations (those
        without one: the mean of the rest), over the workers; None before anything is known."""
        known = list(self.before.values()) or list(self.took.values())
        if not known:
            return None
        mean = sum(known) / len(known)
        todo = [*self.waiting, *self.running]
        return sum(self.before.get(n, mean) for n in todo) / max(1, self.workers)

    def render(self, width: int) -> str:
        counts = {s: 0 for s in COUNTED}
        for s in self.worst.values():
            if s in counts:
                counts[s] += 1
        failures = " ".join(f"{n} {s.value}" for s, n in counts.items())
        left = self.left()
        parts = [
            f"memhp {self.done}/{self.selected} done",
            failures,
            _clock(time.monotonic() - self.started),
            f"~{_clock(left)} left" if left is not None else "",
            "now: " + ", ".join(n.rpartition("::")[2] for n in self.running)
            if self.running
            else "",
        ]
        line = " | ".join(p for p in parts if p)
        return line if len(line) <= width else line[: max(0, width - 3)] + "..."


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s"


class StatusLine:
    """The controller's standing, shown as a line (terminal) or plain lines (else)."""

    def __init__(self, config: pytest.Config, mode: str) -> None:
        self.config = config
        self.mode = mode
        self.tty = False
        self.tr: Any = None
        workers = getattr(config.option, "numprocesses", None)
        self.standing = Standing(0, workers if isinstance(workers, int) and workers > 0 else 1)
        self.tenth = 0  # the last tenth a plain line was printed for
        self.wrapped = False  # progress lines print above the line

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The terminal reporter is there now (it registers in a pytest_configure too). Its
        file, not sys.stdout, tells a terminal: pytest has replaced sys.stdout already."""
        self.tr = self.config.pluginmanager.get_plugin("terminalreporter")
        self.tty = self.tr is not None and (
            self.mode == "line"
            or (self.mode == "auto" and self.tr.isatty() and self.config.get_verbosity() <= 0)
        )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._selected([i.nodeid for i in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        if not self.standing.selected:
            self._selected(ids)

    def _selected(self, ids: list[str]) -> None:
        self.standing.selected = len(ids)
        self.standing.waiting = list(ids)
        recorded = _load_durations()
        self.standing.before = {n: recorded[n] for n in ids if n in recorded}
        if self.tty and ids and not self.wrapped:
            self.tr.showfspath = False  # the line says where the run is
            _wrap_progress(self)
            self.wrapped = True

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        s = self.standing
        if nodeid in s.waiting:
            s.waiting.remove(nodeid)
        s.running.append(nodeid)
        self.draw()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        s = self.standing
        s.took[report.nodeid] = s.took.get(report.nodeid, 0.0) + report.duration
        status = Status.SKIP if getattr(report, KNOWN_ATTR, None) else status_of(report)
        old = s.worst.get(report.nodeid)
        if status is not None and (old is None or PRIORITY.index(status) < PRIORITY.index(old)):
            s.worst[report.nodeid] = status
        if self.tty and report.failed and status is not None:  # above the line, as it happens
            self.clear()
            self.tr.write_line(f"{status.value} {report.nodeid} ({report.when})", red=True)
        if report.when == "teardown":
            s.done += 1
            if report.nodeid in s.running:
                s.running.remove(report.nodeid)
            self.draw()

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport | pytest.CollectReport
    ) -> Generator[None, Any, Any]:
        """On a terminal the line replaces pytest's letters and words (the categories, which
        the summary counts, stay; failures print above the line)."""
        result = yield
        if self.tty and result and isinstance(report, pytest.TestReport):
            return (result[0], "", "")
        return result

    def draw(self) -> None:
        s = self.standing
        if self.tr is None:
            return
        if self.tty:
            width = shutil.get_terminal_size().columns
            self.tr.rewrite(s.render(width - 1), erase=True)
            self.tr.flush()
        elif s.selected and (tenth := 10 * s.done // s.selected) > self.tenth:
            self.tenth = tenth
            if self.tr._tw.width_of_current_line:  # after pytest's letters
                self.tr.write("\n")
            self.tr.write_line(s.render(1000))

    def clear(self) -> None:
        if self.tty:
            self.tr.rewrite("", erase=True)
            self.tr.write("\r")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        self.clear()
        if self.standing.done:
            _save_durations(self.standing.took)


def _wrap_progress(line: StatusLine) -> None:
    """Progress lines print above the status line, which is then drawn again."""
    inner = progress.sink

    def sink(text: str) -> None:
        line.clear()
        inner(text)
        line.draw()

    progress.sink = sink


def _load_durations() -> dict[str, float]:
    try:
        data = json.loads(durations_file().read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def _save_durations(took: dict[str, float]) -> None:
    """This run's durations over the recorded ones (written whole, then renamed)."""
    merged = {**_load_durations(), **{k: round(v, 2) for k, v in took.items() if math.isfinite(v)}}
    path = durations_file()
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(merged, indent=0, sort_keys=True))
        tmp.replace(path)
    except OSError:  # the estimate is a nicety: a read-only cache costs only that
        pass


def register(config: pytest.Config) -> None:
    """On the controller, unless --memhp-status off."""
    mode = config.getoption("memhp_status")
    if mode != "off" and not hasattr(config, "workerinput"):
        config.pluginmanager.register(StatusLine(config, mode), "memhp-status")
