"""The reproducer script memhp writes next to a failure, without a guest: what it sends,
waits for and checks, and that bash takes it (testcases/test_repro.py runs one for real)."""

from __future__ import annotations

import shlex
import subprocess

from harness import images
from harness.arch import X86_64
from harness.qemu.accel import choose_accel
from harness.qemu.config import MachineConfig
from harness.report import repro
from harness.report.results import Result
from harness.transcript import Step
from harness.verdict import Status

FAILURE = """AssertionError: online_movable: 2 effect(s) not as the kernel must show them
  /proc/zoneinfo Node 0 Movable present: expected 32768 (+1 x 32768), seen 32767
    why: online_pages -> adjust_present_page_count
  /proc/meminfo MemTotal: expected +131072 kB, seen +131068 kB
    why: totalram_pages follows the managed pages"""


def test_findings_are_read_back_from_the_failure_text() -> None:
    assert repro.findings(FAILURE) == [
        ("/proc/zoneinfo Node 0 Movable present", "32768 (+1 x 32768)", "32767"),
        ("/proc/meminfo MemTotal", "+131072 kB", "+131068 kB"),
    ]


def test_findings_become_checks_of_the_change_the_step_must_make() -> None:
    zone = repro.Check.of(0, "/proc/zoneinfo Node 0 Movable present", "262143 (+7 x 32768)")
    assert zone.delta == 7 * 32768 and zone.value is None
    assert zone.before() == f"before_0=$(probe {shlex.quote(zone.probe or '')})"
    assert zone.after().startswith("check_delta '/proc/zoneinfo Node 0 Movable present' 229376 ")
    managed = repro.Check.of(
        1, "/proc/zoneinfo Node 0 Movable managed", "3 (+1 x (32768 - 512 memmap))"
    )
    assert managed.delta == 32256
    total = repro.Check.of(2, "/proc/meminfo MemTotal", "-131072 kB")
    assert total.delta == -131072 and "MemTotal:" in (total.probe or "")
    state = repro.Check.of(3, "/sys/devices/system/memory/memory40/state", "online")
    assert state.after() == (
        "check /sys/devices/system/memory/memory40/state online "
        "'cat /sys/devices/system/memory/memory40/state'"
    )
    histogram = repro.Check.of(4, "memory40 pfn 0x140000-0x147fff", "no page RESERVED")
    assert histogram.after().startswith("no_check ")


def test_steps_send_what_changes_the_machine_and_wait_for_what_memhp_waited_for() -> None:
    add = Step("qmp", "device_add", {"driver": "pc-dimm", "id": "dimm1"})
    assert repro._step(add, False) == (
        'qmp \'{"execute": "device_add", "arguments": {"driver": "pc-dimm", "id": "dimm1"}}\''
    )
    assert repro._step(Step("qmp", "query-memory-devices"), False).startswith("# (memhp read")
    ost = Step("event", "ACPI_DEVICE_OST", {"info__source": 1, "info__status": 0}, timeout=30)
    gone = Step("event", "DEVICE_DELETED|ACPI_DEVICE_OST", {"device": "dimm1"}, timeout=30)
    assert (
        repro._step(gone, False)
        == "wait_event 'DEVICE_DELETED|ACPI_DEVICE_OST' 30 '\"device\": \"dimm1\"'"
    )
    assert repro._step(Step("event", "a reboot"), False) == "# (memhp waited for a reboot)"
    assert (
        repro._step(ost, False) == "wait_event ACPI_DEVICE_OST 30 '\"source\": 1' '\"status\": 0'"
    )
    online = Step("guest", "echo online > /sys/x", status=1, exercise=True)
    assert repro._step(online, True) == "must_succeed 'echo online > /sys/x'  # memhp saw exit 1"
    assert repro._step(Step("guest", "cat /proc/meminfo", status=0), False).startswith("quietly ")
    write = Step("guest", "echo online > /sys/devices/system/memory/memory40/state", status=0)
    assert repro._step(write, False).startswith("guest ")  # memhp's own, but it acts


def test_the_script_parses_and_boots_memhps_machine_cold() -> None:
    image = images.build("debian:6.12", X86_64)
    config = MachineConfig(arch=X86_64, image=image)
    result = Result(
        nodeid="testcases/test_dimm.py::test_dimm_online_movable[x86_64-debian:6.12]",
        scenario="test_dimm_online_movable",
        arch="x86_64",
        kernel="debian:6.12",
        status=Status.FAIL,
        phase="call",
        start_time=0.0,
        duration=1.0,
        message="AssertionError: online_movable: 2 effect(s) not as the kernel must show them",
        log_excerpt=FAILURE,
    )
    steps = [
        Step("qmp", "object-add", {"qom-type": "memory-backend-ram", "id": "m1", "size": 1}),
        Step("event", "ACPI_DEVICE_OST", {"info__source": 1}, timeout=30),
        Step(
            "guest",
            "echo online_movable > /sys/devices/system/memory/memory40/state",
            status=0,
            exercise=True,
        ),
    ]
    text = repro.script(result, config, choose_accel(X86_64, "tcg"), steps)

    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert "-incoming" not in text and "fd=" not in text  # a cold boot, its own sockets
    assert "port=${qmp_port},server=on" in text and "hostfwd=tcp:127.0.0.1:${ssh_port}-:22" in text
    assert f"IMAGE=${{IMAGE:-{image.path}}}" in text and "${IMAGE}/kernel" in text
    before, act = text.index("before_0=$(probe"), text.index("guest 'echo online_movable")
    assert before < act  # the value the delta starts from is read right before the step
    order = [text.index(s) for s in ("qmp '{", "wait_event ACPI", "guest 'echo", "check_delta '")]
    assert order == sorted(order)
    assert "#     /proc/zoneinfo Node 0 Movable present: expected 32768" in text  # the header
