"""Verdict hooks: every test phase's status comes from ``harness.verdict.classify``, once, on
the worker that ran it, and travels on the report (``report.memhp_status``, which xdist
carries to the controller). The terminal's words, the result records, JUnit, KCIDB and the
session's exit status all read that one answer.

Also here: the dmesg watch after a scenario (a splat fails it), a failed check on a VM that
is gone meanwhile judged again, and the bookkeeping of an interrupted or stopped run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import pytest

from harness.errors import GuestPanic, InfrastructureError, KernelFailure, MemhpError
from harness.hotplug.known import expected_bug, known_bug
from harness.plugin import repeats, stash
from harness.plugin.recording import (
    NO_CALLSPEC,
    finish_results,
    junit_measurements,
    measured,
    record,
)
from harness.qemu.machine import QemuMachine
from harness.report.results import RunRecord
from harness.signals import received
from harness.verdict import PRIORITY, Status, classify, exit_status, is_harness_bug

STATUS_ATTR = "memhp_status"  # on each TestReport: the Status value of that phase
MEASURED_ATTR = "memhp_measurements"  # on a teardown report: the test's ``measure`` numbers
KNOWN_ATTR = "memhp_known"  # on a FAIL that is a known kernel bug: which (harness.hotplug.known)
# pytest's stats category, the letter and the word each status shows in the terminal.
TERMINAL = {
    Status.FAIL: ("failed", "F", "FAILED"),
    Status.ERROR: ("error", "E", "ERROR"),
    Status.MISS: ("error", "M", "MISS"),
}


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller judges the run as a whole
        config.pluginmanager.register(RunWatch(config), "memhp-run-watch")


def status_of(report: pytest.TestReport | pytest.CollectReport) -> Status | None:
    value = getattr(report, STATUS_ATTR, None)
    return Status(value) if value else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: fail it if the guest kernel complained meanwhile. A failed
    check on a VM that is gone meanwhile is judged again: QEMU dead or frozen is the
    infrastructure's, a panic on the console the kernel's."""
    v = item.stash.get(stash.VM, None)
    try:
        result = yield
    except (AssertionError, KernelFailure) as exc:
        if v is not None and not isinstance(exc, GuestPanic):
            lost = _lost_meanwhile(v.machine)
            if lost is not None:
                raise lost from exc
        _attach_dmesg(item, "guest dmesg during the test")
        raise
    except BaseException:
        _attach_dmesg(item, "guest dmesg during the test")
        raise
    if v is not None and v.machine.alive():
        v.expect_no_splats(item_allowed(item))
        v.dmesg_start = len(v.guest.dmesg())  # the cleanup's own lines are judged apart
    return result


def item_allowed(item: pytest.Item) -> list[str]:
    """The dmesg_allow patterns of a test: lines it provokes on purpose."""
    return [a for m in item.iter_markers("dmesg_allow") for a in m.args]


def _lost_meanwhile(machine: QemuMachine) -> MemhpError | None:
    """The error of a VM that no longer serves (None if it does)."""
    try:
        machine.check_alive("the check after a failed scenario", 0.0)
    except MemhpError as exc:
        return exc
    return None


def _attach_dmesg(item: pytest.Item, title: str) -> None:
    v = item.stash.get(stash.VM, None)
    if v is None or not v.machine.alive():
        return
    with contextlib.suppress(MemhpError):
        lines = v.guest.dmesg()[v.dmesg_start :]
        item.add_report_section("call", title, "\n".join(lines[-80:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Classify the phase, once. memhp's own errors are reported by their message (it says
    what happened), a harness bug keeps its traceback and says whose it is."""
    report: pytest.TestReport = yield
    exc = call.excinfo.value if call.excinfo else None
    status = classify(exc, call.when, report.skipped)
    if call.when == "call":
        status = _known_bugs(item, report, status, exc)
    setattr(report, STATUS_ATTR, status.value)
    if call.when == "teardown" and (numbers := measured(item)):
        setattr(report, MEASURED_ATTR, numbers)  # for the controller's JUnit
    if isinstance(exc, InfrastructureError):
        report.sections.append(
            ("memhp: infrastructure failure (not a kernel verdict)", exc.details() or str(exc))
        )
    elif isinstance(exc, KernelFailure) and exc.console_tail:
        report.sections.append(("memhp: guest console", exc.console_tail))
    elif is_harness_bug(exc):
        report.sections.append(
            ("memhp: a bug in memhp (not a kernel verdict)", f"{type(exc).__name__}: {exc}")
        )
    if isinstance(exc, MemhpError) and report.failed:
        report.longrepr = f"{type(exc).__name__}: {exc}"
    results_dir = item.config.getoption("memhp_results")
    if results_dir and "memhp_target" in getattr(item, "callspec", NO_CALLSPEC).params:
        record(item, call, report, status, results_dir)
    return report


def _known_bugs(
    item: pytest.Item, report: pytest.TestReport, status: Status, exc: BaseException | None
) -> Status:
    """A FAIL that is a known kernel bug of this kernel line is reported as an expected
    failure (XFAIL) naming it; a listed scenario that passes where the bug is known says the
    table is stale (strict: memhp's ERROR)."""
    v = item.stash.get(stash.VM, None)
    if v is None:
        return status
    scenario = getattr(item, "originalname", item.name)
    version = v.facts.version
    arch = v.arch.name
    if status is Status.FAIL and (bug := known_bug(scenario, version, str(exc), arch)):
        report.outcome = "skipped"
        report.wasxfail = bug.describe()
        setattr(report, KNOWN_ATTR, bug.describe())
    elif status is Status.PASS and (bug := expected_bug(scenario, version, arch)):
        report.outcome = "failed"
        report.longrepr = (
            f"{bug.name} is listed as known on {v.facts.release} but did not show: "
            "harness/hotplug/known.py is stale (a fix was backported?)"
        )
        return Status.ERROR
    return status


def pytest_report_teststatus(
    report: pytest.TestReport | pytest.CollectReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    status = status_of(report)
    return TERMINAL.get(status) if status is not None and report.failed else None


# -- the run as a whole ---------------------------------------------------------------------


class RunWatch:
    """The controller's view of the run: each test's worst status, what was selected, and
    whether a signal cut the run short. It decides the session's exit status
    (``harness.verdict.exit_status``) and, for --memhp-results, writes the run record and a
    MISS record for every selected scenario that never ran."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.statuses: dict[str, Status] = {}
        self.finished: set[str] = set()  # tests whose teardown was reported
        self.selected: list[str] = []
        self.interrupted_by: str | None = None  # a signal's name
        self.stopped: str | None = None  # why pytest stopped early on request (--maxfail, -x)

    def _note(self, nodeid: str, status: Status) -> None:
        old = self.statuses.get(nodeid)
        if old is None or PRIORITY.index(status) < PRIORITY.index(old):
            self.statuses[nodeid] = status

    def never_ran(self) -> list[str]:
        """Selected tests that never finished (a signal cut them, or kept them from
        starting)."""
        return [n for n in self.selected if n not in self.finished]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = [i.nodeid for i in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: each worker reports the same
        ids."""
        if not self.selected:
            self.selected = list(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        status = status_of(report)
        if getattr(report, KNOWN_ATTR, None):
            status = Status.SKIP  # a known kernel bug: reported, not this run's news
        if status is not None:
            self._note(report.nodeid, status)
        if report.when == "teardown":
            self.finished.add(report.nodeid)
            junit_measurements(self.config, report.nodeid, getattr(report, MEASURED_ATTR, {}))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # a scenario file that does not import: memhp's bug
            self._note(report.nodeid or "collection", Status.ERROR)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        exc = excinfo.value
        if isinstance(exc, _requested_stops()):  # --maxfail, -x
            self.stopped = str(exc) or "stopped early"
        elif not isinstance(exc, pytest.exit.Exception):
            self.interrupted_by = received() or "SIGINT"

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return  # nothing was meant to run
        if session.shouldfail and self.stopped is None:
            self.stopped = str(session.shouldfail)
        if session.exitstatus in VERDICT_EXITS:
            session.exitstatus = exit_status(
                self.statuses.values(), interrupted=self.interrupted_by is not None
            )
        run = RunRecord(
            selected=len(self.selected),
            ran=len([n for n in self.selected if n in self.finished]),
            interrupted_by=self.interrupted_by,
            stopped=self.stopped,
        )
        self.config.stash[stash.RUN_RECORD] = run
        results_dir = self.config.getoption("memhp_results")
        rounds = self.config.getoption("memhp_repeat")
        if rounds and not self.interrupted_by and (todo := repeats.failing(self.statuses)):
            self.config.stash[stash.REPEATS] = repeats.rerun(self.config, todo, rounds, results_dir)
        if results_dir:
            finish_results(self.config, results_dir, run, self.never_ran())


def _requested_stops() -> tuple[type[BaseException], ...]:
    """The KeyboardInterrupts pytest and xdist raise for a stop the user asked for."""
    stops: list[type[BaseException]] = [pytest.Session.Interrupted]
    with contextlib.suppress(ImportError):
        from xdist.dsession import Interrupted  # type: ignore[import-untyped]

        stops.append(Interrupted)
    return tuple(stops)


# The exit statuses of a session that ran (or began running) tests; pytest's others (usage
# errors, internal errors, no tests) stand as they are.
VERDICT_EXITS = (
    pytest.ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED,
    pytest.ExitCode.INTERRUPTED,
)
