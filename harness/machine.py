"""QEMU process control, after QEMU's own python/qemu/machine.

A ``Machine`` is a context manager: it launches QEMU in a private 0700 temp dir with QMP and
the serial console on socketpairs (no socket paths to clash between parallel workers), waits
for the guest to be ready (console marker, then an SSH handshake), and always ends its QEMU:
QMP ``quit`` first, SIGKILL if that does not work, also on exceptions and Ctrl-C. QEMU is
also given PR_SET_PDEATHSIG so it dies with the harness even if the harness is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from harness.accel import Accel, choose_accel
from harness.arch import Arch, GiB
from harness.console import ConsoleLog
from harness.errors import (
    InfrastructureError,
    KernelFailure,
    LaunchError,
    MemhpError,
    UsageError,
    VMLost,
)
from harness.guest import Guest
from harness.images import READY_MARKER, SSHD_MARKER, Image
from harness.progress import progress
from harness.qmp import QMP, EventLog

PORT_ATTEMPTS = 5


class ColdPlug(Protocol):
    """A device on QEMU's command line; see harness.coldplug."""

    def qemu_args(self, workdir: Path, arch: Arch) -> list[str]: ...
_PR_SET_PDEATHSIG = 1
_counter = itertools.count()


@dataclass(frozen=True)
class MachineConfig:
    arch: Arch
    image: Image
    cmdline: tuple[str, ...] = ()  # extra kernel parameters
    memory: int = 1 * GiB  # boot RAM
    maxmem: int = 16 * GiB
    slots: int = 8  # DIMM slots
    smp: int = 2
    accel: Accel | None = None  # None: choose_accel()
    qemu_args: tuple[str, ...] = ()  # anything else for QEMU's command line
    coldplug: tuple[ColdPlug, ...] = ()  # memory devices present from the start
    boot_timeout: float | None = None  # None: the arch's TCG bound (KVM: a third)
    labels: dict[str, str] = field(default_factory=dict)  # free-form, for reports

    def kernel_cmdline(self) -> str:
        # panic=-1 + -no-reboot: a panicking guest makes QEMU exit at once.
        base = [f"console={self.arch.console}", "panic=-1", "log_buf_len=8M",
                "printk.time=1"]
        return " ".join(base + list(self.cmdline))


class Machine:
    """One QEMU guest. Use as ``with Machine(config) as m: m.guest.run(...)``."""

    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.arch = config.arch
        self.accel = config.accel or choose_accel(config.arch)
        self.name = f"memhp-{os.getpid()}-{next(_counter)}"
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._qmp: QMP | None = None
        self.console: ConsoleLog | None = None
        self.guest: Guest | None = None  # set once ready
        self.port = 0
        self.cmdline: list[str] = []
        self.boot_seconds = 0.0
        self.qemu_version = ""
        self._ports: dict[str, str] = {}  # PCIe root port -> device plugged there

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Machine:
        self.start()
        return self

    def start(self) -> None:
        """Launch and wait until ready; on any failure (Ctrl-C too) QEMU is ended."""
        try:
            self.launch()
            self.wait_ready()
        except BaseException:
            self.shutdown()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    # -- launch --------------------------------------------------------------------------

    def launch(self) -> None:
        binary = shutil.which(self.arch.qemu_binary)
        if binary is None:
            raise UsageError(f"{self.arch.qemu_binary} not found: install the "
                             f"{self.arch.qemu_package} package (./setup.sh does)")
        self._dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))  # mkdtemp: mode 0700
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._launch_once(binary)
                return
            except _PortClash:
                self._reap()
                if attempt == PORT_ATTEMPTS - 1:
                    raise LaunchError("no free TCP port for the SSH forward after "
                                      f"{PORT_ATTEMPTS} tries", cmdline=self._cmdline_str()
                                      ) from None

    def _launch_once(self, binary: str) -> None:
        assert self._dir is not None
        qmp_ours, qmp_theirs = socket.socketpair()
        con_ours, con_theirs = socket.socketpair()
        self.port = _free_port()
        self.cmdline = [binary, *self._args(qmp_theirs.fileno(), con_theirs.fileno())]
        log = (self._dir / "qemu.log").open("wb")
        try:
            self._proc = subprocess.Popen(
                self.cmdline, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(qmp_theirs.fileno(), con_theirs.fileno()), cwd=self._dir,
                start_new_session=True,  # the harness, not the terminal's ^C, ends QEMU
                preexec_fn=_die_with_parent)
        finally:
            log.close()
            qmp_theirs.close()
            con_theirs.close()
        self.console = ConsoleLog(con_ours, self._dir / "console.log")
        self._qmp = QMP(self.name)
        threading.Thread(target=self._watch, args=(self._proc, self._qmp.events),
                         name=f"{self.name}-watch", daemon=True).start()
        try:
            self._qmp.connect(qmp_ours)
        except InfrastructureError:
            self._proc.wait(10)
            log_text = self.qemu_log()
            if "Could not set up host forwarding rule" in log_text:
                raise _PortClash() from None
            raise LaunchError(f"QEMU did not start: {_last_line(log_text)}",
                              cmdline=self._cmdline_str(), console_tail=log_text) from None
        self.qemu_version = _qemu_version(self._qmp.execute("query-version"))

    def _args(self, qmp_fd: int, con_fd: int) -> list[str]:
        c = self.config
        img = c.image
        return [
            "-name", self.name,
            "-machine", self.arch.machine,
            *self.accel.qemu_args(self.arch),
            *self.arch.firmware_args(),
            "-smp", str(c.smp),
            "-m", f"{c.memory // (1 << 20)}M,slots={c.slots},maxmem={c.maxmem // (1 << 20)}M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(img.kernel), "-initrd", str(img.initramfs),
            "-append", c.kernel_cmdline(),
            "-chardev", f"socket,id=mon,fd={qmp_fd}", "-mon", "chardev=mon,mode=control",
            "-chardev", f"socket,id=con,fd={con_fd}", "-serial", "chardev:con",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
            *(a for port in self.arch.hotplug_ports for a in ("-device", port)),
            *(a for dev in c.coldplug for a in dev.qemu_args(self.workdir, self.arch)),
            *c.qemu_args,
        ]

    @staticmethod
    def _watch(proc: subprocess.Popen[bytes], events: EventLog) -> None:
        code = proc.wait()
        events.lose(f"QEMU exited with status {code}")

    def wait_ready(self) -> None:
        """Console markers and an SSH handshake, within the boot bound.

        The guest starts sshd before loading the scenario modules, so the handshake overlaps
        the module loading; ready is both done and the ready marker printed.
        """
        assert self.console is not None
        timeout = self.config.boot_timeout or (
            self.arch.boot_timeout_tcg / (3 if self.accel.name == "kvm" else 1))
        start = time.monotonic()

        def left() -> float:
            return max(1.0, timeout - (time.monotonic() - start))

        with progress(f"boot: {self.arch.name} {self.config.image.spec} ({self.accel.name})"):
            self.console.wait_for(SSHD_MARKER, timeout)
            self.guest = Guest(self.port, self.config.image.host_key,
                               str(self.config.image.client_key), on_lost=self.lost_error)
            self.guest.connect(left())
            self.console.wait_for(READY_MARKER, left())
        self.boot_seconds = time.monotonic() - start

    # -- use -----------------------------------------------------------------------------

    @property
    def events(self) -> EventLog:
        assert self._qmp is not None, "machine not launched"
        return self._qmp.events

    def qmp(self, command: str, args: dict[str, object] | None = None,
            timeout: float = 30.0) -> Any:
        assert self._qmp is not None, "machine not launched"
        return self._qmp.execute(command, args, timeout)

    @property
    def workdir(self) -> Path:
        """The machine's private (0700) directory: backing files, logs."""
        assert self._dir is not None, "machine not launched"
        return self._dir

    def take_port(self, device: str) -> str:
        """A free PCIe root port for a hot-plugged PCI device."""
        for spec in self.arch.hotplug_ports:
            port = spec.split("id=", 1)[1].split(",", 1)[0]
            if port not in self._ports:
                self._ports[port] = device
                return port
        raise UsageError(f"no free PCIe root port for {device} on {self.arch.name} "
                         f"({len(self._ports)} in use): unplug a device first")

    def release_port(self, device: str) -> None:
        self._ports = {p: d for p, d in self._ports.items() if d != device}

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def lost_error(self, message: str,
                   kind: type[InfrastructureError] = VMLost) -> MemhpError:
        """The error for a guest that stopped answering: a kernel panic is the kernel's
        failure; anything else is infrastructure, with QEMU's state and the console tail."""
        if self._proc is not None:
            # A panicking guest makes QEMU exit (panic=-1, -no-reboot): let it finish, and
            # let the console reader drain, before judging.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2.0)
        if self.console is not None:
            self.console.drained(2.0)
            panic = self.console.panic()
            if panic:
                return KernelFailure(f"guest kernel panicked: {panic.splitlines()[0]}",
                                     console_tail=panic)
        status = "still running" if self.alive() else (
            f"exited with status {self._proc.returncode}" if self._proc else "never started")
        tail = self.console.tail() if self.console else ""
        return kind(f"{message} (QEMU {status})", console_tail=tail, cmdline=self._cmdline_str())

    def qemu_log(self) -> str:
        path = self._dir / "qemu.log" if self._dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _cmdline_str(self) -> str:
        return " ".join(shlex.quote(a) for a in self.cmdline)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """QMP quit, then SIGKILL; always releases sockets, threads and the temp dir."""
        if self.guest is not None:
            self.guest.close()
        if self._qmp is not None and self.alive():
            with contextlib.suppress(MemhpError, TimeoutError, OSError):
                self._qmp.execute("quit", timeout=timeout)
        self._reap(timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _reap(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # our own child, by PID
                self._proc.wait()
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.console is not None:
            self.console.close()


class _PortClash(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL QEMU if the harness dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _qemu_version(info: Any) -> str:
    q = info["qemu"]
    return f"{q['major']}.{q['minor']}.{q['micro']}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
