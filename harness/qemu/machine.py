"""QEMU process control, after QEMU's own python/qemu/machine.

A ``QemuMachine`` is a context manager: it launches QEMU in a private 0700 temp dir with QMP and
the serial console on socketpairs (no socket paths to clash between parallel workers), waits
for the guest to be ready (console marker, then an SSH handshake), and always ends its QEMU:
QMP ``quit`` first, SIGKILL if that does not work (and says so), also on exceptions and
Ctrl-C. QEMU runs under ``setpriv --pdeathsig KILL`` so it dies with the harness even if the
harness is SIGKILLed.

A machine that stops answering is marked lost at the first sign (a command quiet for a
heartbeat while QMP gets no answer, QEMU gone): from then on nothing waits on it, so a dead
or frozen guest reaches its verdict in seconds. Before calling it lost, the console is read
again: a panic or lockup racing the loss is the kernel's failure (syzkaller does the same).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.arch import SavedBoots
from harness.errors import (
    HarnessError,
    ImageError,
    InfrastructureError,
    KernelFailure,
    LaunchError,
    MemhpError,
    UsageError,
    VMLost,
)
from harness.guest.markers import READY_MARKER, SSHD_FAILED_MARKER, SSHD_MARKER
from harness.guest.shell import GuestShell
from harness.liveness import QMP_TIMEOUT
from harness.progress import progress
from harness.qemu.accel import choose_accel
from harness.qemu.config import MachineConfig
from harness.qemu.console import ConsoleLog
from harness.qemu.judge import judge
from harness.qemu.qmp import QMP, EventLog, EventTimeout
from harness.transcript import Step, Transcript

PORT_ATTEMPTS = 5


_counter = itertools.count()
NAME_PREFIX = "memhp-"  # QEMU's -name and the private dir: memhp-<harness pid>-<n>
# query-status states of a VM that serves its guest (the migration ones: saving, restoring).
SERVING = frozenset(
    {"running", "inmigrate", "finish-migrate", "postmigrate", "prelaunch", "suspended"}
)  # suspended: a guest in S3, by its own choice


# A restore that needs an after-restore step (harness.arch.SavedBoots) is trusted only when
# SSH answered and the step ran within this many seconds, with no lockup or stall report:
# a vCPU left without timer interrupts can keep SSH waiting until the kernel's stall
# detector kicks it (~21 s), too late for the step. Sound restores take 0.4-2.5 s here.
FIXUP_TRUSTED_WITHIN = 10.0


class QemuMachine:
    """One QEMU guest. Use as ``with QemuMachine(config) as m: m.guest.run(...)``."""

    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        self.arch = config.arch
        self.accel = config.accel or choose_accel(config.arch)
        self.name = f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._qmp: QMP | None = None
        self.console: ConsoleLog | None = None
        self.guest: GuestShell | None = None  # set once ready
        self.port = 0
        self.cmdline: list[str] = []
        self.boot_seconds = 0.0
        self.qemu_version = ""
        self.qemu = config.qemu_build()  # which QEMU: the host's, a path, a Debian build
        self.lost: str | None = None  # why the VM was declared lost
        self.killed = False  # shutdown had to SIGKILL QEMU
        self._lost_lock = threading.Lock()
        self.transcript = Transcript()  # QMP commands, waits, guest commands (memhp repro)

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> QemuMachine:
        self.start()
        return self

    def start(self) -> None:
        """Launch and wait until ready; on any failure (Ctrl-C too) QEMU is ended.

        :raises UsageError: no QEMU binary or setpriv.
        :raises LaunchError: QEMU would not start, or the saved boot would not restore.
        :raises BootTimeout, ImageError, SSHError: the boot did not become ready.
        :raises KernelFailure: the guest kernel panicked or could not run its init.
        """
        try:
            self.launch()
            if self.config.restore_from is not None:
                self.restore(self.config.restore_from)
            else:
                self.wait_ready()
        except BaseException:
            self.shutdown()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- launch --------------------------------------------------------------------------

    def launch(self) -> None:
        if self._proc is not None:
            raise HarnessError(f"{self.name} was launched already")
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise UsageError(
                "setpriv not found: install util-linux (QEMU runs under "
                "setpriv --pdeathsig so it dies with the harness)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))  # mkdtemp: mode 0700
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._launch_once(setpriv)
                return
            except _PortClash:
                self._reap()
                if attempt == PORT_ATTEMPTS - 1:
                    raise LaunchError(
                        f"no free TCP port for the SSH forward after {PORT_ATTEMPTS} tries",
                        cmdline=self._cmdline_str(),
                    ) from None
                progress.note(
                    f"{self.name}: SSH port {self.port} was taken before QEMU "
                    "bound it; trying another"
                )

    def _launch_once(self, setpriv: str) -> None:
        if self._dir is None:
            raise HarnessError(f"{self.name}: no private dir to launch in")
        qmp_ours, qmp_theirs = socket.socketpair()
        con_ours, con_theirs = socket.socketpair()
        self.port = _free_port()
        self.cmdline = [
            *self.qemu.argv,
            *self.config.qemu_args(
                qemu=self.qemu,
                name=self.name,
                accel=self.accel,
                qmp_fd=qmp_theirs.fileno(),
                console_fd=con_theirs.fileno(),
                ssh_port=self.port,
                workdir=self.workdir,
            ),
        ]
        log = (self._dir / "qemu.log").open("wb")
        try:
            # setpriv execs QEMU with PR_SET_PDEATHSIG set: no preexec_fn (unsafe while
            # other threads run), and the child's pid is QEMU's.
            self._proc = subprocess.Popen(
                [setpriv, "--pdeathsig", "KILL", "--", *self.cmdline],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(qmp_theirs.fileno(), con_theirs.fileno()),
                cwd=self._dir,
                env={**os.environ, **self.qemu.env},
                start_new_session=True,
            )  # the harness, not the terminal's ^C, ends QEMU
        finally:
            log.close()
            qmp_theirs.close()
            con_theirs.close()
        self.console = ConsoleLog(con_ours, self._dir / "console.log")
        self._qmp = QMP(self.name)
        self._qmp.events.probe = self._probe_during_wait
        self._qmp.events.transcript = self.transcript
        threading.Thread(
            target=self._watch,
            args=(self._proc, self._qmp.events),
            name=f"{self.name}-watch",
            daemon=True,
        ).start()
        try:
            self._qmp.connect(qmp_ours)
        except InfrastructureError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
            log_text = self.qemu_log()
            if "Could not set up host forwarding rule" in log_text:
                raise _PortClash() from None
            status = (
                "still running"
                if self._proc.poll() is None
                else f"exit status {self._proc.returncode}"
            )
            raise LaunchError(
                f"QEMU did not start ({status}): {_last_line(log_text)}",
                cmdline=self._cmdline_str(),
                console_tail=log_text,
            ) from None
        self.qemu_version = _qemu_version(self._qmp.execute("query-version", timeout=QMP_TIMEOUT))

    @staticmethod
    def _watch(proc: subprocess.Popen[bytes], events: EventLog) -> None:
        code = proc.wait()
        events.lose(f"QEMU exited with status {code}")

    def wait_ready(self) -> None:
        """Console markers and an SSH handshake, within the boot bound.

        The guest starts sshd before loading the scenario modules, so the handshake overlaps
        the module loading; ready is both done and the ready marker printed. A guest that
        cannot start sshd, or cannot run its init, fails at once: from a damaged image that
        is an ImageError, from an intact one the kernel's failure.
        """
        if self.console is None:
            raise HarnessError(f"{self.name} is not launched")
        timeout = self.config.boot_timeout or (
            self.arch.boot_timeout_tcg / (3 if self.accel.name == "kvm" else 1)
        )
        start = time.monotonic()

        def left() -> float:
            return max(1.0, timeout - (time.monotonic() - start))

        def probe() -> None:
            self.check_alive("the boot", time.monotonic() - start)

        with progress(
            f"boot: {self.arch.name} {self.config.image.spec} on {self.qemu.label} "
            f"({self.accel.name})"
        ):
            try:
                self.console.wait_for(SSHD_MARKER, timeout, refuse=SSHD_FAILED_MARKER, probe=probe)
                self._connect_guest(left())
                self.console.wait_for(READY_MARKER, left(), probe=probe)
            except KernelFailure as exc:
                damage = self.config.image.damage()
                if damage is not None:
                    raise ImageError(
                        f"the guest image is damaged: {damage} (boot: {exc})",
                        console_tail=exc.console_tail,
                    ) from exc
                raise
        self.boot_seconds = time.monotonic() - start

    def _connect_guest(self, timeout: float) -> None:
        """A new SSH session to the guest (every boot, restore and reboot gets its own: what
        a GuestShell caches is one boot's), within ``timeout``."""
        image = self.config.image
        self.guest = GuestShell(self.port, image.host_key, str(image.client_key), host=self)
        self.guest.transcript = self.transcript
        self.guest.connect(timeout)

    # -- saved boots -----------------------------------------------------------------------

    def save(self, dest: Path, timeout: float = 120.0) -> None:
        """Save the running guest to ``dest`` (QEMU migration to a file), then let it run on.
        The file appears only once complete."""
        part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with progress(f"{self.name}: saving the booted guest for later fresh guests"):
            self._migrate("migrate", {"uri": f"exec:cat > {shlex.quote(str(part))}"}, timeout)
            self._wait_migration_finalized()
            self.qmp("cont")
        part.replace(dest)
        if self.console is not None:
            dest.with_suffix(".console").write_text(self.console.text)

    def _wait_migration_finalized(self, timeout: float = 5.0) -> None:
        """QEMU sends MIGRATION completed before the source leaves finish-migrate, and
        refuses ``cont`` until it has ("Migration is not finalized yet"); no event marks
        that step, so ask, briefly."""
        deadline = time.monotonic() + timeout
        while self.qmp("query-status").get("status") == "finish-migrate":
            if time.monotonic() > deadline:
                raise LaunchError(f"{self.name}: the migration to a file never finalized")
            time.sleep(0.01)

    def restore(self, source: Path, timeout: float = 60.0) -> None:
        """Start the guest from a saved boot (the machine was launched with -incoming defer);
        ready once SSH answers (and the arch's after-restore step ran, see SavedBoots).

        :raises LaunchError, SSHError: the restore cannot serve (the caller boots instead).
        """
        start = time.monotonic()
        history = source.with_suffix(".console")
        if self.console is not None and history.is_file():
            self.console.history = history.read_text(errors="replace")
        saved_boots = self.arch.saved_boots
        fixup = (
            saved_boots.fixup(self.qemu.version) if isinstance(saved_boots, SavedBoots) else None
        )
        with progress(
            f"restore: {self.arch.name} {self.config.image.spec} on {self.qemu.label} "
            f"({self.accel.name})"
        ):
            self._migrate(
                "migrate-incoming", {"uri": f"exec:cat {shlex.quote(str(source))}"}, timeout
            )
            if self.qmp("query-status").get("status") != "running":
                self.qmp("cont")
            if fixup is None:
                self._connect_guest(max(5.0, timeout - (time.monotonic() - start)))
            else:
                self._after_restore(fixup, start)
        self.boot_seconds = time.monotonic() - start

    def _after_restore(self, fixup: str, start: float) -> None:
        """Connect, then run ``fixup`` in the restored guest (e.g. re-arm the decrementers
        QEMU's TCG ppc did not migrate before v8.2); trust the guest only if that was done
        quickly and the kernel reported no lockup or stall since the restore."""
        try:
            self._connect_guest(max(2.0, FIXUP_TRUSTED_WITHIN - (time.monotonic() - start)))
            if self.guest is None:
                raise HarnessError(f"{self.name} is not connected")
            left = max(2.0, FIXUP_TRUSTED_WITHIN - (time.monotonic() - start))
            result = self.guest.run(fixup, check=False, timeout=left)
        except KernelFailure as exc:  # the saved boot failed, not the kernel under test
            why = f"the restored guest did not finish its after-restore step: {exc}"
            raise LaunchError(why) from exc
        if result.status != 0:
            raise LaunchError(f"the restored guest's after-restore step failed {result.describe()}")
        if self.console is not None and (lockup := self.console.lockup()):
            raise LaunchError(f"the restored guest reported {lockup.splitlines()[0]}")
        if (took := time.monotonic() - start) > FIXUP_TRUSTED_WITHIN:
            raise LaunchError(f"the restored guest took {took:.1f} s to answer and re-arm")

    def reset(self, timeout: float | None = None) -> None:
        """QMP system_reset, then wait until the guest booted again (needs reboot=True)."""
        mark = self.console_mark()
        self.qmp("system_reset")
        self.wait_rebooted(mark, timeout)

    def console_mark(self) -> int:
        if self.console is None:
            raise HarnessError(f"{self.name} is not launched")
        return self.console.mark()

    def wait_rebooted(self, mark: int, timeout: float | None = None) -> None:
        """The guest rebooted (QMP system_reset, or its own reboot) after console offset
        ``mark``: wait for its init's markers again and connect SSH anew."""
        if not self.config.reboot:
            raise HarnessError(f"{self.name}: a reboot ends QEMU unless MachineConfig.reboot")
        if self.console is None:
            raise HarnessError(f"{self.name} is not launched")
        bound = timeout or self.arch.boot_timeout_tcg
        start = time.monotonic()
        if self.guest is not None:
            self.guest.close()

        def probe() -> None:
            self.check_alive("the reboot", time.monotonic() - start)

        with progress(f"{self.name}: reboot"):
            self.console.wait_for(
                SSHD_MARKER, bound, refuse=SSHD_FAILED_MARKER, probe=probe, after=mark
            )
            self._connect_guest(max(5.0, bound - (time.monotonic() - start)))
            self.console.wait_for(
                READY_MARKER, max(5.0, bound - (time.monotonic() - start)), probe=probe, after=mark
            )

    def _migrate(self, command: str, args: dict[str, object], timeout: float) -> None:
        """A migration command, waited on by its MIGRATION events until it completed."""
        self.qmp(
            "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
        )
        mark = self.events.mark()
        self.qmp(command, args)
        try:
            done = self.events.wait(
                lambda e: (
                    e["event"] == "MIGRATION"
                    and e["data"]["status"] in ("completed", "failed", "cancelled")
                ),
                after=mark,
                timeout=timeout,
                what=f"{command} to complete",
            )
        except EventTimeout as exc:  # QEMU's own migration: never the guest kernel's
            raise LaunchError(
                str(exc), cmdline=self._cmdline_str(), console_tail=self.qemu_log()
            ) from exc
        if done["data"]["status"] != "completed":
            raise LaunchError(
                f"{command} {args}: migration {done['data']['status']}",
                cmdline=self._cmdline_str(),
                console_tail=self.qemu_log(),
            )

    # -- use -----------------------------------------------------------------------------

    @property
    def events(self) -> EventLog:
        if self._qmp is None:
            raise HarnessError(f"{self.name} is not launched")
        return self._qmp.events

    def qmp(
        self, command: str, args: dict[str, object] | None = None, timeout: float = QMP_TIMEOUT
    ) -> Any:
        """A QMP command; no answer in ``timeout`` marks the machine lost.

        :raises QMPCommandError: QEMU refused it (its message).
        :raises VMLost: no answer, or the VM was lost before (GuestPanic: a panic).
        """
        if self._qmp is None:
            raise HarnessError(f"{self.name} is not launched")
        if self.lost is not None:
            raise VMLost(f"QMP {command}: the VM was lost already ({self.lost})")
        self.transcript.add(Step("qmp", command, dict(args or {})))
        try:
            return self._qmp.execute(command, args, timeout)
        except VMLost as exc:
            raise self.lost_error(f"{exc} (QEMU {self._process_state()})") from exc

    @property
    def workdir(self) -> Path:
        """The machine's private (0700) directory: backing files, logs."""
        if self._dir is None:
            raise HarnessError(f"{self.name} is not launched")
        return self._dir

    def ready_guest(self) -> GuestShell:
        """The SSH side of a booted machine; HarnessError before it is ready."""
        if self.guest is None:
            raise HarnessError(f"{self.name} is not booted (no SSH connection yet)")
        return self.guest

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        """QEMU runs and the VM was not declared lost."""
        return self._proc is not None and self._proc.poll() is None and self.lost is None

    # -- liveness ------------------------------------------------------------------------

    def check_alive(self, doing: str, quiet: float) -> None:
        """Return if QEMU answers QMP and runs the VM.

        :raises VMLost: it does not (GuestPanic or KernelFailure: the console shows why).
        """
        if self.lost is not None:
            raise VMLost(f"the VM was lost already ({self.lost})")
        problem = self._unresponsive()
        if problem is not None:
            raise self.lost_error(f"{doing} got no answer for {quiet:.0f} s and {problem}")

    def _probe_during_wait(self, final: bool) -> None:
        """An event wait's heartbeat; before it gives up, the guest must answer SSH too, so
        that a timeout means a live guest that did not act."""
        self.check_alive("a QMP event wait", 0.0)
        if final and self.guest is not None and not self.guest.answers():
            raise self.lost_error("waiting for a QMP event, the guest stopped answering SSH")

    def _unresponsive(self, timeout: float = 5.0) -> str | None:
        """Why QEMU does not serve its VM (gone, stopped, not answering QMP), or None."""
        if self._proc is None or self._proc.poll() is not None:
            code = self._proc.returncode if self._proc else None
            return f"QEMU exited (status {code})"
        if self._qmp is None:
            return "QEMU has no QMP connection"
        try:
            status = self._qmp.execute("query-status", timeout=timeout)
        except (VMLost, InfrastructureError) as exc:
            return f"{exc} (QEMU {self._process_state()})"
        if status.get("status") not in SERVING:
            return f"the VM is {status.get('status')}, not running"
        return None

    def _process_state(self) -> str:
        """QEMU's process state from /proc, e.g. 'stopped (SIGSTOP?)'."""
        if self._proc is None:
            return "never started"
        if self._proc.poll() is not None:
            return f"exited with status {self._proc.returncode}"
        try:
            state = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "state unknown"
        return {
            "T": "stopped (SIGSTOP?)",
            "t": "stopped by a tracer",
            "Z": "a zombie",
            "D": "in uninterruptible sleep",
        }.get(state, f"running (state {state})")

    def lost_error(self, message: str, kind: type[InfrastructureError] = VMLost) -> MemhpError:
        """Mark the VM lost and say why: a kernel panic or lockup on the console is the
        kernel's failure; anything else is infrastructure, with QEMU's state and the
        console tail. The console is read again after QEMU had a moment to finish, since a
        panic report may be racing the loss."""
        with self._lost_lock:
            first = self.lost is None
            if first:
                self.lost = message
        if self._qmp is not None:
            self._qmp.events.lose(message)
        if self._proc is not None and first:
            # A panicking guest makes QEMU exit (panic=-1, -no-reboot): let it finish, and
            # let the console reader drain, before judging.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2.0)
        if self.console is not None:
            self.console.drained(2.0 if first else 0.0)
        error = judge(
            self.console,
            message,
            kind=kind,
            qemu_state=self._process_state(),
            cmdline=self._cmdline_str(),
        )
        if self.guest is not None:
            self.guest.lose(error)
        return error

    def qemu_log(self) -> str:
        path = self._dir / "qemu.log" if self._dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _cmdline_str(self) -> str:
        return " ".join(shlex.quote(a) for a in self.cmdline)

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """QMP quit, then SIGKILL (said, and recorded in ``killed``); always releases
        sockets, threads and the temp dir. A lost VM is killed at once."""
        if self.guest is not None:
            self.guest.close()
        if self._qmp is not None and self.alive():
            with contextlib.suppress(MemhpError, TimeoutError, OSError):
                self._qmp.execute("quit", timeout=min(timeout, 5.0))
        self._reap(0.0 if self.lost else timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _reap(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # our own child, by PID
                self._proc.wait()
                self.killed = True
                why = (
                    f"the VM was lost: {self.lost}"
                    if self.lost
                    else (f"it did not quit within {timeout:g} s")
                )
                progress.note(f"{self.name}: killed QEMU (pid {self._proc.pid}; {why})")
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.console is not None:
            self.console.close()


def sweep_stale_dirs() -> list[Path]:
    """Remove the private dirs of machines whose harness process is gone (SIGKILLed before
    it could clean up); the pid in the name says whose a dir is."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{NAME_PREFIX}*-*-*"):
        pid = path.name.removeprefix(NAME_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class _PortClash(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _qemu_version(info: Any) -> str:
    q = info["qemu"]
    return f"{q['major']}.{q['minor']}.{q['micro']}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
