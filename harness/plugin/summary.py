"""The end of a run in the terminal: the failures that are not the kernel's, the run's
completeness, and a table target x scenario -> status, all from the verdicts on the reports
(harness.plugin.verdicts)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.plugin import stash
from harness.plugin.options import targets
from harness.plugin.recording import scenario_name
from harness.plugin.verdicts import KNOWN_ATTR, status_of
from harness.report.results import repeat_summary
from harness.verdict import Status

KINDS = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _reports(tr: Any) -> list[Any]:
    return [r for kind in KINDS for r in tr.stats.get(kind, []) if hasattr(r, "when")]


def _not_kernel_section(tr: Any) -> None:
    """pytest lists failures under FAILURES/ERRORS; this says which were not the kernel's
    (infrastructure and memhp's own bugs), with the console tail."""
    reports = [(r, s) for r in _reports(tr) if (s := status_of(r)) and s.infrastructure]
    if not reports:
        return
    tr.section("memhp: infrastructure and harness errors (not kernel verdicts)")
    for rep, status in reports:
        tr.write_line(f"{status.value} {rep.nodeid} ({rep.when}):", bold=True)
        err = [ln for ln in rep.longreprtext.splitlines() if ln.strip()]
        for line in err[-3:]:
            tr.write_line(f"  {line.removeprefix('E ').strip()}")
        for title, text in rep.sections:
            if title.startswith("memhp:"):
                tr.write_line("  " + text.replace("\n", "\n  "))


def _run_line(tr: Any, config: pytest.Config) -> None:
    run = config.stash.get(stash.RUN_RECORD, None)
    if run is None or run.complete:
        return
    tr.section("memhp run", red=bool(run.interrupted_by), yellow=not run.interrupted_by)
    tr.write_line(run.describe(), red=bool(run.interrupted_by), bold=True)
    if run.interrupted_by:
        tr.write_line(
            "  the scenarios that never finished are MISS in the reports: no verdict on them",
        )


def _table(tr: Any, config: pytest.Config) -> None:
    rows: dict[str, dict[str, str]] = {}
    ids = [t.id for t in targets(config)]
    for rep in _reports(tr):
        status = status_of(rep)
        if not rep.nodeid.startswith("testcases") or status is None:
            continue
        if status is Status.PASS and rep.when != "call":
            continue
        name, target = scenario_name(rep.nodeid, ids)
        if target not in ids:
            continue  # not a scenario run on a guest
        cell = rows.setdefault(name, {})
        if target not in cell or status is not Status.PASS:
            cell[target] = "XFAIL" if getattr(rep, KNOWN_ATTR, None) else status.value
    if not rows:
        return
    cols = sorted({t for r in rows.values() for t in r})
    tr.section("memhp scenarios")
    width = max(len(n) for n in rows)
    tr.write_line(" " * width + "  " + "  ".join(f"{c:<22}" for c in cols))
    for name in sorted(rows):
        cells = "  ".join(f"{rows[name].get(c, '-'):<22}" for c in cols)
        tr.write_line(f"{name:<{width}}  {cells}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    _not_kernel_section(terminalreporter)
    _table(terminalreporter, config)
    _repeats_section(terminalreporter, config)
    _run_line(terminalreporter, config)


def _repeats_section(tr: Any, config: pytest.Config) -> None:
    """--memhp-repeat: each failing scenario, failed every time or flaky."""
    repeated = config.stash.get(stash.REPEATS, {})
    if not repeated:
        return
    tr.section("memhp: failures repeated on fresh guests")
    for nodeid, statuses in repeated.items():
        line = repeat_summary(statuses)
        tr.write_line(f"{nodeid}: {line}", yellow="flaky" in line, red="flaky" not in line)
