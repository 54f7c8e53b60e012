"""What the plugin's hooks keep on pytest's config and items, shared by its modules."""

from __future__ import annotations

import pytest

from harness.hotplug.vm import HotplugVM
from harness.preflight import Plan
from harness.report.results import Result

PLAN = pytest.StashKey[Plan]()  # config: the validated run
VM = pytest.StashKey[HotplugVM]()  # item: the guest the scenario got
RESULT = pytest.StashKey[Result]()  # item: its result record so far
