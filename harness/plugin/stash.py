"""What the hooks keep on pytest's config and items, shared by the plugin's modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from harness.hotplug.vm import HotplugVM
from harness.preflight import Plan
from harness.report.results import Result, RunRecord

if TYPE_CHECKING:
    from harness.plugin.pool import Pool
    from harness.plugin.recording import PageFlagRecorder

PLAN = pytest.StashKey[Plan]()  # config: the validated run
POOL: pytest.StashKey[Pool] = pytest.StashKey()  # config: this process's guest pool, if any
RUN_RECORD = pytest.StashKey[RunRecord]()  # config: the run as a whole, once it finished
VM = pytest.StashKey[HotplugVM]()  # item: the guest the scenario got
RECORDER: pytest.StashKey[PageFlagRecorder] = (
    pytest.StashKey()
)  # item: its page-flag pictures, if recorded
RESULT = pytest.StashKey[Result]()  # item: its result record so far
TRANSCRIPT_MARK = pytest.StashKey[int]()  # item: where its guest's transcript began for it
MEASUREMENTS = pytest.StashKey[dict[str, object]]()  # item: what the scenario measured
REPEATS = pytest.StashKey[dict[str, list[str]]]()  # config: failing node id -> reruns' statuses
