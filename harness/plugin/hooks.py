"""memhp's pytest plugin, as pytest loads it (entry point ``memhp = harness.plugin.hooks``):
the hooks and fixtures of the plugin's modules, gathered in one namespace. pluggy finds hook
implementations by name, so re-exporting them here registers them.

    options.py    options, markers, the run's inputs checked before any boot, targets, shards
    fixtures.py   the guest pool (trimmed between scenarios) and the ``vm`` fixture; skips
                  for what is lacking
    verdicts.py   each phase classified once (harness.verdict); the dmesg watch; the run's
                  exit status and completeness
    status.py     where the run stands: a line on a terminal, plain lines elsewhere
    summary.py    the terminal's end: errors that are not the kernel's, the scenario table
"""

from __future__ import annotations

from harness.plugin import status
from harness.plugin.fixtures import measure, memhp_pool, pytest_runtest_teardown, vm
from harness.plugin.options import (
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure_node,
    pytest_generate_tests,
)
from harness.plugin.options import pytest_configure as _configure_options
from harness.plugin.summary import pytest_terminal_summary
from harness.plugin.verdicts import (
    pytest_configure as _configure_verdicts,
)
from harness.plugin.verdicts import (
    pytest_report_teststatus,
    pytest_runtest_call,
    pytest_runtest_makereport,
)

__all__ = [
    "measure",
    "memhp_pool",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_report_teststatus",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "pytest_runtest_teardown",
    "pytest_terminal_summary",
    "vm",
]


def pytest_configure(config: object) -> None:
    _configure_options(config)  # type: ignore[arg-type]
    _configure_verdicts(config)  # type: ignore[arg-type]
    status.register(config)  # type: ignore[arg-type]
