"""A plugin for the child run of the signal test: it touches $MEMHP_FAULT_FINISHED when the
runner itself (the xdist controller, or the only process) has the teardown report of
test_passes, i.e. when that scenario counts as finished. The parent signals after that, so
the "1 of 2 reached a verdict" it checks does not depend on timing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FINISHED = "MEMHP_FAULT_FINISHED"
_runner: list[bool] = []


def pytest_configure(config: pytest.Config) -> None:
    _runner.append(not hasattr(config, "workerinput"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    mark = os.environ.get(FINISHED)
    name = report.nodeid.rsplit("::", 1)[-1].split("[", 1)[0]
    if mark and _runner and _runner[0] and report.when == "teardown" and name == "test_passes":
        Path(mark).touch()
