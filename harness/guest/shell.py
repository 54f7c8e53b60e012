"""The guest over SSH (paramiko): commands, raw reads, memory blocks, dmesg."""

from __future__ import annotations

import base64
import gzip
import logging
import shlex
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import paramiko

from harness.errors import InfrastructureError, KernelFailure, MemhpError, SSHError, VMLost
from harness.guest import files, kpageflags
from harness.guest.boot import BOOT_READ, Boot, parse_boot
from harness.guest.files import Files
from harness.guest.memory import (
    LAYOUT_FILES,
    LAYOUT_LINKS,
    MEMORY,
    MemoryLayout,
    parse_block_writes,
    parse_meminfo,
    parse_memory,
)
from harness.guest.procfs import NODES, Zones, parse_node_list, parse_zoneinfo
from harness.liveness import HEARTBEAT
from harness.transcript import Step, Transcript

# A shell's exit status for a command it could not find or not execute: a guest image
# without its tool, never the kernel's answer.
MISSING_TOOL = (126, 127)


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    stdout: str
    stderr: str

    def check(self, *, exercises_kernel: bool = False) -> CommandResult:
        """The result, if the command succeeded.

        :raises GuestCommandError: a command that exercises the kernel failed.
        :raises GuestToolError: the harness's own plumbing failed, or a tool is missing.
        """
        if self.status == 0:
            return self
        if exercises_kernel and self.status not in MISSING_TOOL:
            raise GuestCommandError(self)
        raise GuestToolError(self)

    def describe(self) -> str:
        err = self.stderr.strip().splitlines()
        return f"(exit {self.status}): {self.command}" + (f": {err[-1]}" if err else "")


class GuestCommandError(KernelFailure):
    """A guest command that exercises the kernel (a sysfs write, ndctl create-namespace,
    dropping caches) failed: the guest kernel said no."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f"guest command failed {result.describe()}")
        self.result = result


class GuestToolError(InfrastructureError):
    """A command the harness runs for itself (reading files, gzip, ndctl list, a wait
    loop) failed, or a tool the image should have is missing: the infrastructure's."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f"guest plumbing failed {result.describe()}")
        self.result = result


class GuestCommandTimeout(KernelFailure):
    """A command on a live guest did not finish within its bound (e.g. an offline that
    retries forever): the kernel did not complete the operation."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(
            f"guest command did not finish within {timeout:g} s (the guest "
            f"answers otherwise): {command}"
        )


class GuestHost(Protocol):
    """What a guest needs from the machine it runs in."""

    def check_alive(self, doing: str, quiet: float) -> None:
        """Raise (VMLost, GuestPanic) if the VM is gone; ``doing`` waited ``quiet`` s."""

    def lost_error(self, message: str, kind: type[InfrastructureError]) -> MemhpError:
        """Mark the VM lost; the error that says why (a panic is the kernel's)."""


_WAIT_EXPIRED = 99  # wait_until's loop ran out of time (any other failure is the loop's)
# A command quiet for HEARTBEAT makes the harness ask whether the VM still lives; twice
# that, and a second SSH session must answer too, else the guest is lost.
log = logging.getLogger("memhp.ssh")


def _request_exec(chan: paramiko.Channel, command: str, timeout: float) -> bool:
    """Send the exec request; False when sshd does not answer it within ``timeout``.

    paramiko waits for that answer without a bound (Channel._wait_for_event), and a guest
    whose sshd still opens sessions but cannot start a command (an Oops holding a lock every
    fork needs) would hold the harness there for good. Closing the channel ends that wait.
    """
    failed: list[BaseException] = []

    def request() -> None:
        try:
            chan.exec_command(command)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=request, name="ssh-exec", daemon=True)
    thread.start()
    try:
        thread.join(timeout)
    except BaseException:  # ^C or SIGTERM meanwhile: leave no request blocked on the channel
        chan.close()
        raise
    if thread.is_alive():
        chan.close()
        thread.join(1.0)
        return False
    if failed:
        raise failed[0]
    return True


class GuestShell:
    """SSH access to a booted guest, with its host key pinned."""

    def __init__(
        self, port: int, host_key: str, client_key: str, host: GuestHost | None = None
    ) -> None:
        self.port = port
        self._host_key = host_key
        self._client_key = client_key
        # The machine knows whether QEMU died or stopped, whether the kernel panicked, and
        # the console tail.
        self._host = host
        self._client: paramiko.SSHClient | None = None
        self._boot: Boot | None = None
        self._lost: MemhpError | None = None
        self.commands = 0  # commands run so far (profiling: round trips per scenario)
        self.transcript: Transcript | None = None  # records each command (memhp repro)

    # -- connection ----------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        """Connect, retrying while sshd is still coming up, until ``timeout``.

        :raises SSHError: no connection in time, or the keys do not match the image's.
        :raises VMLost: the VM went away meanwhile (GuestPanic: its kernel panicked).
        """
        deadline = time.monotonic() + timeout
        kind, b64 = self._host_key.split()[:2]
        key = paramiko.PKey.from_type_string(kind, base64.b64decode(b64))
        last: Exception | None = None
        while time.monotonic() < deadline:
            client = paramiko.SSHClient()
            client.get_host_keys().add(f"[127.0.0.1]:{self.port}", kind, key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(
                    "127.0.0.1",
                    port=self.port,
                    username="root",
                    key_filename=self._client_key,
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=5,
                    banner_timeout=10,
                    auth_timeout=10,
                )
            except paramiko.AuthenticationException as exc:
                raise SSHError(
                    f"SSH authentication to the guest failed ({exc}); the image's "
                    "keys do not match: rebuild it with memhp image build"
                ) from exc
            except paramiko.BadHostKeyException as exc:
                raise SSHError(
                    "the guest's SSH host key is not the one pinned at image "
                    "build: is another VM on this port?"
                ) from exc
            except (OSError, paramiko.SSHException, EOFError) as exc:
                last = exc
                client.close()
                if self._host is not None:
                    self._host.check_alive("the SSH handshake", 0.0)
                time.sleep(0.1)  # sshd not listening yet; nothing to wait on but time
                continue
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(5)
            self._client = client
            return
        raise self._lose(f"no SSH connection to the guest within {timeout:g} s: {last!r}", SSHError)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def lose(self, error: MemhpError) -> None:
        """The VM is gone: every later command raises ``error`` at once."""
        if self._lost is None:
            self._lost = error
        self.close()

    def _lose(self, message: str, kind: type[InfrastructureError] = VMLost) -> MemhpError:
        error = self._host.lost_error(message, kind) if self._host else kind(message)
        self.lose(error)
        return error

    # -- commands ------------------------------------------------------------------------

    def run(self, command: str, *, check: bool = True, timeout: float = 120.0) -> CommandResult:
        """A command the harness runs for itself (reads, waits, set-up).

        :raises GuestToolError: it failed (with ``check``): the infrastructure's.
        """
        result = self._result(command, timeout)
        self._record(result, exercise=False)
        return result.check() if check else result

    def exercise(self, command: str, *, timeout: float = 120.0) -> CommandResult:
        """A command that exercises the kernel: its failure is the kernel's answer.

        :raises GuestCommandError: the kernel refused it (a missing tool: GuestToolError).
        """
        result = self._result(command, timeout)
        self._record(result, exercise=True)
        return result.check(exercises_kernel=True)

    def _record(self, result: CommandResult, exercise: bool) -> None:
        if self.transcript is not None:
            self.transcript.add(
                Step("guest", result.command, status=result.status, exercise=exercise)
            )

    def _result(self, command: str, timeout: float) -> CommandResult:
        stdout, stderr, status = self._exec(command, timeout)
        return CommandResult(
            command, status, stdout.decode(errors="replace"), stderr.decode(errors="replace")
        )

    def read_bytes(self, path: str, offset: int, length: int, *, timeout: float = 120.0) -> bytes:
        """Raw bytes of a file, e.g. a /proc/kpageflags range (dd seeks, no text mangling).

        gzip -1 in the guest: page-flag words repeat, so 512 KiB of them (256 MiB of 4 KiB
        pages) come over SSH as about 2 KiB, 177 -> 121 ms on x86-64 under TCG."""
        cmd = (
            f"set -o pipefail; dd if={shlex.quote(path)} bs=65536 iflag=skip_bytes,count_bytes "
            f"skip={offset} count={length} 2>/dev/null | gzip -1"
        )
        stdout, stderr, status = self._exec(cmd, timeout)
        if status != 0:  # plumbing: dd of a proc file, gzip
            raise GuestToolError(CommandResult(cmd, status, "", stderr.decode()))
        try:
            return gzip.decompress(stdout)
        except (OSError, EOFError) as exc:  # a truncated or garbled stream, not the kernel's
            raise SSHError(f"the guest's gzip of {path} did not decompress: {exc}") from exc

    def _transport(self) -> paramiko.Transport:
        if self._lost is not None:
            raise self._lost
        transport = self._client.get_transport() if self._client else None
        if transport is None or not transport.is_active():
            raise SSHError("not connected to the guest")
        return transport

    def _exec(self, command: str, timeout: float) -> tuple[bytes, bytes, int]:
        start = time.monotonic()
        out, err, status = self._exec_once(command, timeout)
        self.commands += 1
        log.debug(
            "ssh %s -> %d (%d bytes, %.3f s)",
            command[:200],
            status,
            len(out),
            time.monotonic() - start,
        )
        return out, err, status

    def _exec_once(self, command: str, timeout: float) -> tuple[bytes, bytes, int]:
        transport = self._transport()
        try:
            chan = transport.open_session(timeout=2 * HEARTBEAT)
            try:
                chan.settimeout(HEARTBEAT)
                if not _request_exec(chan, command, 2 * HEARTBEAT):
                    raise self._lose(
                        f"the guest opened an SSH session but did not start '{command}' "
                        f"in {2 * HEARTBEAT:g} s"
                    )
                return self._collect(chan, command, timeout)
            finally:
                chan.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self._lost is not None:  # lost meanwhile (the watchdog closed the session)
                raise self._lost from exc
            raise self._lose(f"lost the guest during '{command}': {exc!r}") from exc

    def _collect(
        self, chan: paramiko.Channel, command: str, timeout: float
    ) -> tuple[bytes, bytes, int]:
        """Output and exit status of a running command. Every HEARTBEAT without output the
        machine is asked whether the VM lives, so a dead or frozen guest ends the wait in
        seconds; a live guest gets the command's own ``timeout``."""
        out, err = bytearray(), bytearray()
        start = quiet_since = time.monotonic()
        stdout_open = True
        while True:
            if stdout_open:
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    self._quiet(command, time.monotonic() - quiet_since, start, timeout)
                    continue
                stdout_open = bool(data)
                out += data
                quiet_since = time.monotonic()
            elif chan.status_event.wait(HEARTBEAT):
                break
            else:
                self._quiet(command, time.monotonic() - quiet_since, start, timeout)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
        while chunk := chan.recv_stderr(65536):
            err += chunk
        status = chan.recv_exit_status()
        if status == -1:  # the channel closed without an exit status: the guest went away
            raise self._lose(f"lost the guest during '{command}': connection closed")
        return bytes(out), bytes(err), status

    def _quiet(self, command: str, quiet: float, start: float, timeout: float) -> None:
        """``command`` has printed nothing for ``quiet`` s: is the VM still there?"""
        if self._host is not None:
            self._host.check_alive(f"'{command}'", quiet)
        if quiet >= 2 * HEARTBEAT and not self.answers():
            raise self._lose(
                f"the guest stopped answering: '{command}' quiet for "
                f"{quiet:.0f} s and a second SSH session got no answer in "
                f"{2 * HEARTBEAT:g} s (QEMU itself answers)"
            )
        if time.monotonic() - start >= timeout:
            raise GuestCommandTimeout(command, timeout)

    def answers(self) -> bool:
        """Whether a second session on the same connection runs `true` in time."""
        try:
            probe = self._transport().open_session(timeout=2 * HEARTBEAT)
            try:
                return _request_exec(probe, "true", 2 * HEARTBEAT) and probe.status_event.wait(
                    2 * HEARTBEAT
                )
            finally:
                probe.close()
        except (OSError, EOFError, paramiko.SSHException):
            return False

    # -- memory --------------------------------------------------------------------------

    def read_files(self, paths: Sequence[str], links: Sequence[str] = ()) -> Files:
        """Every file of ``paths`` (globs) and every existing link of ``links``, by one
        process in the guest (harness.guest.files)."""
        return files.parse(self.run(files.command(paths, links)).stdout)

    def memory(self) -> MemoryLayout:
        return parse_memory(self.read_files(LAYOUT_FILES, LAYOUT_LINKS))

    def set_block_states(self, indices: Sequence[int], state: str) -> dict[int, int]:
        """Write ``state`` to each memoryN/state in turn, in one command; block index ->
        0 on success, else the errno the kernel returned (its refusal is the caller's to
        judge).

        :raises InfrastructureError: the guest did not report a write's outcome.
        """
        if not indices:
            return {}
        script = (
            f"for i in {' '.join(str(i) for i in indices)}; do echo @$i; "
            f"echo {shlex.quote(state)} > {MEMORY}/memory$i/state; echo =$?; done 2>&1"
        )
        results = parse_block_writes(self.run(script).stdout)
        if results.keys() != set(indices):  # a write whose outcome nobody saw
            missing = sorted(set(indices) - results.keys())
            raise InfrastructureError(f"the guest did not report writing memory{missing}/state")
        return results

    def wait_until(self, condition: str, *, timeout: float, what: str) -> None:
        """Wait, bounded, until the shell ``condition`` holds in the guest.

        Only for guest state that tells QEMU (and so QMP) nothing when it changes, such as
        pseries DLPAR onlining or an NFIT region appearing. The loop runs in the guest and
        re-checks every 20 ms.
        """
        script = (
            f"end=$(( $(cut -d. -f1 /proc/uptime) + {int(timeout) + 1} )); "
            f"until {condition}; do "
            f"[ $(cut -d. -f1 /proc/uptime) -ge $end ] && exit {_WAIT_EXPIRED}; "
            "usleep 20000 || exit; done"
        )
        result = self.run(script, check=False, timeout=timeout + 30)
        if result.status == _WAIT_EXPIRED:
            raise AssertionError(f"no {what} in the guest within {timeout:g} s")
        result.check()  # the loop itself failed (usleep missing): the plumbing's

    def wait_blocks_online(self, addr: int, size: int, *, timeout: float) -> None:
        """Wait until every memory block of [addr, addr + size) exists and is online."""
        bs = self.block_size()
        first, last = addr // bs, (addr + size - 1) // bs
        condition = (
            f"! for i in $(seq {first} {last}); do "
            f'[ "$(cat {MEMORY}/memory$i/state 2>/dev/null)" = online ] || echo no; '
            "done | grep -q no"
        )
        self.wait_until(condition, timeout=timeout, what=f"online memory blocks {first}-{last}")

    def block_size(self) -> int:
        return self.boot().block_size

    def zones(self) -> Zones:
        return parse_zoneinfo(self.run("cat /proc/zoneinfo").stdout)

    def nodes(self, kind: str = "online") -> frozenset[int]:
        """A node list of /sys/devices/system/node: online, possible, has_memory, ..."""
        return parse_node_list(self.run(f"cat {NODES}/{shlex.quote(kind)}").stdout)

    def meminfo(self) -> dict[str, int]:
        return parse_meminfo(self.run("cat /proc/meminfo").stdout)

    def boot(self) -> Boot:
        """What this boot of the guest is (release, command line, sizes): read once, since
        every boot, restore and reboot gets a new GuestShell.

        :raises InfrastructureError: the read does not parse.
        """
        if self._boot is None:
            out = self.run(BOOT_READ).stdout
            try:
                self._boot = parse_boot(out)
            except (ValueError, IndexError) as exc:
                raise InfrastructureError(f"cannot read what this boot is: {exc}") from exc
        return self._boot

    def page_size(self) -> int:
        return self.boot().page_size

    def pageblock_size(self) -> int:
        return self.boot().pageblock_size

    def kpageflags(self, pfns: range) -> list[int]:
        """/proc/kpageflags of ``pfns``; fewer values when the file ends (at max_pfn).

        :raises GuestToolError: the guest's dd or gzip failed; SSHError: the data came
            back garbled.
        """
        offset, length = kpageflags.byte_range(pfns)
        raw = self.read_bytes("/proc/kpageflags", offset, length)
        return kpageflags.unpack(raw, self.boot().byteorder)

    def cmdline(self) -> Sequence[str]:
        return self.boot().cmdline

    def dmesg(self) -> list[str]:
        return self.run("dmesg").stdout.splitlines()
