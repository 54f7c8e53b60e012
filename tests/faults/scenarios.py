"""Scenarios that break their own VM, run by tests/test_faults.py in a child pytest (this
file does not match test_*.py, so no ordinary run collects it). Each does one thing to its
guest; the parent checks which verdict class the harness gave, how fast, and that nothing
was left behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness.arch import GiB
from harness.hotplug.vm import HotplugVM

MARK = "MEMHP_FAULT_MARK"  # a file the scenario touches when its guest is up


def _guest_is_up(vm: HotplugVM) -> None:
    if os.environ.get(MARK):
        Path(os.environ[MARK]).touch()


def _qemu(vm: HotplugVM) -> int:
    pid = vm.machine.pid
    assert pid is not None
    return pid


def test_passes(vm: HotplugVM) -> None:
    """A healthy scenario, so that an interrupted run has something finished to report."""
    assert vm.guest.run("echo ok").stdout.strip() == "ok"


@pytest.mark.memhp(fresh=True)
def test_qemu_killed(vm: HotplugVM) -> None:
    """kill -9 QEMU, then use the guest: infrastructure (ERROR), not the kernel."""
    os.kill(_qemu(vm), signal.SIGKILL)
    vm.guest.run("cat /proc/meminfo")


@pytest.mark.memhp(fresh=True)
def test_qemu_stopped(vm: HotplugVM) -> None:
    """SIGSTOP QEMU in the middle of a DIMM plug: a frozen VM, infrastructure (ERROR)."""
    os.kill(_qemu(vm), signal.SIGSTOP)
    vm.plug_dimm(1 * GiB)
    vm.online(vm.dimms[0])


@pytest.mark.memhp(fresh=True)
def test_qemu_stopped_during_command(vm: HotplugVM) -> None:
    """SIGSTOP QEMU while a guest command runs: ERROR in seconds, not a command timeout."""
    pid = _qemu(vm)
    vm.guest.run("sleep 1")
    os.kill(pid, signal.SIGSTOP)
    vm.guest.run("sleep 2; cat /proc/zoneinfo")


@pytest.mark.memhp(fresh=True)
def test_guest_panics(vm: HotplugVM) -> None:
    """The guest kernel panics: the kernel's failure (FAIL), with the console."""
    vm.guest.run("echo c > /proc/sysrq-trigger", check=False)


@pytest.mark.memhp(fresh=True)
def test_waits_for_a_signal(vm: HotplugVM) -> None:
    """Sits in a long guest command until the runner is signalled."""
    _guest_is_up(vm)
    vm.guest.run("sleep 600")
    time.sleep(600)


def test_harness_bug(vm: HotplugVM) -> None:
    """memhp's own bug mid-scenario (a KeyError): ERROR with its traceback, never a FAIL."""
    vm.guest.run("true")
    _ = {}["memhp_target"]


@pytest.mark.memhp(fresh=True)
def test_guest_tool_missing(vm: HotplugVM) -> None:
    """A tool the harness runs in the guest is not there: the image's problem (ERROR)."""
    vm.guest.run("memhp-no-such-tool --version")


def test_panic_during_cleanup(vm: HotplugVM) -> None:
    """A scenario that passes, and a kernel that panics when the cleanup offlines what the
    scenario left plugged: the scenario's FAIL (in its teardown)."""
    dimm = vm.plug_dimm(vm.arch.dimm_align)
    (block,) = vm.online(dimm, "online_movable")
    state = f"/sys/devices/system/memory/memory{block.index}/state"
    vm.guest.run(
        f'(while [ "$(cat {state})" = online ]; do usleep 10000; done; '
        "echo c > /proc/sysrq-trigger) >/dev/null 2>&1 </dev/null &"
    )


RUNS = "MEMHP_FAULT_RUNS"  # a file counting the runs of test_fails_every_other_run


def test_fails_every_other_run(vm: HotplugVM) -> None:
    """Fails on its 1st, 3rd, ... run: a flaky scenario for --memhp-repeat."""
    runs = Path(os.environ[RUNS])
    n = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(n))
    assert n % 2 == 0, f"run {n}: this scenario fails every other run"


def test_fails_every_run(vm: HotplugVM) -> None:
    """Fails each time: a regression, for --memhp-repeat."""
    assert vm.guest.run("echo 1").stdout.strip() == "2", "this scenario fails every run"
