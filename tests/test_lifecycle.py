"""The process and protocol layer: EventLog marks and waits, QMP error mapping against a real
QEMU (``-machine none``, up in a fraction of a second), and QemuMachine's start, stop, kill
and lost paths on a real guest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import images
from harness.arch import X86_64
from harness.errors import HarnessError, InfrastructureError, QMPCommandError, VMLost
from harness.images import Image
from harness.qemu.machine import MachineConfig, QemuMachine
from harness.qemu.qmp import QMP, EventLog, EventTimeout, event_is

# -- EventLog ------------------------------------------------------------------------------


def test_wait_sees_only_events_after_the_mark() -> None:
    log = EventLog()
    log.append({"event": "DEVICE_DELETED", "data": {"device": "dimm1"}})
    mark = log.mark()
    log.append({"event": "DEVICE_DELETED", "data": {"device": "dimm2"}})

    got = log.wait(event_is("DEVICE_DELETED"), after=mark, timeout=1, what="a deletion")

    assert got["data"]["device"] == "dimm2"
    assert [e["data"]["device"] for e in log.since(0)] == ["dimm1", "dimm2"]


def test_wait_wakes_on_an_event_from_another_thread() -> None:
    log = EventLog()
    mark = log.mark()
    threading.Timer(
        0.2,
        log.append,
        [{"event": "ACPI_DEVICE_OST", "data": {"info": {"device": "d", "source": 1}}}],
    ).start()
    start = time.monotonic()

    log.wait(event_is("ACPI_DEVICE_OST", info__device="d"), after=mark, timeout=10, what="_OST")

    assert time.monotonic() - start < 2


def test_timeout_on_a_live_vm_is_the_guests_and_names_the_wait() -> None:
    log = EventLog()
    probes: list[bool] = []
    log.probe = probes.append

    with pytest.raises(EventTimeout, match=r"no the eject verdict within 0\.3 s"):
        log.wait(event_is("DEVICE_DELETED"), after=0, timeout=0.3, what="the eject verdict")

    assert probes[-1] is True  # the final probe asked for the guest too


def test_a_probe_that_finds_the_vm_gone_ends_the_wait() -> None:
    log = EventLog()

    def probe(final: bool) -> None:
        raise VMLost("QEMU exited (status -9)")

    log.probe = probe
    with pytest.raises(VMLost, match="status -9"):
        log.wait(event_is("X"), after=0, timeout=30, what="x")


def test_lose_wakes_every_waiter_with_vm_lost() -> None:
    log = EventLog()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            log.wait(event_is("X"), after=0, timeout=30, what="x")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    log.lose("QEMU exited with status 0")
    for t in threads:
        t.join(5)
    assert [type(e) for e in errors] == [VMLost] * 3


# -- QMP against a real QEMU -------------------------------------------------------------


@pytest.fixture
def bare_qemu() -> Iterator[tuple[subprocess.Popen[bytes], QMP]]:
    """qemu-system-x86_64 -machine none with QMP on a socketpair, connected."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [
            shutil.which(X86_64.qemu_binary) or X86_64.qemu_binary,
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-chardev",
            f"socket,id=m,fd={theirs.fileno()}",
            "-mon",
            "chardev=m,mode=control",
        ],
        pass_fds=(theirs.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    theirs.close()
    qmp = QMP("lifecycle")
    try:
        qmp.connect(ours, timeout=10)
        yield proc, qmp
    finally:
        qmp.close()
        if proc.poll() is None:
            proc.kill()  # our own child, by PID
        proc.wait()


def test_qmp_runs_commands_and_reports_qemus_refusal_with_its_message(
    bare_qemu: tuple[subprocess.Popen[bytes], QMP],
) -> None:
    _, qmp = bare_qemu
    assert qmp.execute("query-version")["qemu"]["major"] >= 7

    with pytest.raises(QMPCommandError, match="nosuch") as exc:
        qmp.execute("device_del", {"id": "nosuch"})

    assert exc.value.command == "device_del"


def test_qmp_to_a_dead_qemu_is_vm_lost(bare_qemu: tuple[subprocess.Popen[bytes], QMP]) -> None:
    proc, qmp = bare_qemu
    proc.kill()
    proc.wait()

    with pytest.raises(VMLost):
        qmp.execute("query-status", timeout=5)


def test_qmp_handshake_with_nothing_is_an_infrastructure_error() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()  # the peer is gone before the greeting: qemu.qmp raises ConnectError
    qmp = QMP("nobody")
    try:
        with pytest.raises(InfrastructureError, match="QMP handshake"):
            qmp.connect(ours, timeout=5)
    finally:
        qmp.close()


# -- QemuMachine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> Image:
    return images.build("debian:6.12", X86_64)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_state_guards_raise_before_launch(image: Image) -> None:
    m = QemuMachine(MachineConfig(arch=X86_64, image=image))
    with pytest.raises(HarnessError):
        _ = m.events
    with pytest.raises(HarnessError):
        m.ready_guest()
    with pytest.raises(HarnessError):
        m.wait_ready()


def test_start_and_shutdown_leave_nothing(image: Image) -> None:
    with QemuMachine(MachineConfig(arch=X86_64, image=image)) as m:
        pid, workdir = m.pid, m.workdir
        assert m.ready_guest().run("true").status == 0
    assert pid is not None and _gone(pid)
    assert not workdir.exists() and not m.killed


def test_shutdown_of_a_qemu_that_ignores_quit_kills_it_and_says_so(image: Image) -> None:
    m = QemuMachine(MachineConfig(arch=X86_64, image=image))
    m.start()
    assert m.pid is not None
    os.kill(m.pid, signal.SIGSTOP)  # QMP quit now goes unanswered
    start = time.monotonic()

    m.shutdown(timeout=2)

    assert m.killed and _gone(m.pid)
    assert time.monotonic() - start < 15


def test_a_killed_qemu_marks_the_machine_lost_and_nothing_waits_on_it(image: Image) -> None:
    with QemuMachine(MachineConfig(arch=X86_64, image=image)) as m:
        assert m.pid is not None
        os.kill(m.pid, signal.SIGKILL)
        with pytest.raises(VMLost):
            m.ready_guest().run("cat /proc/meminfo")
        start = time.monotonic()
        with pytest.raises(VMLost):  # the next command fails at once
            m.ready_guest().run("true")
        with pytest.raises(VMLost):
            m.qmp("query-status")
        assert time.monotonic() - start < 1
        assert not m.alive() and m.lost
