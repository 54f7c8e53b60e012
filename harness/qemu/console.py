"""The guest's serial console: captured to a file, watched for readiness and for panics."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import BootTimeout, GuestPanic, KernelFailure, VMLost
from harness.guest.kernel_log import LOCKUP, PANIC
from harness.liveness import HEARTBEAT


class ConsoleLog:
    """Reads QEMU's console chardev socket on a thread; keeps every byte, in a file too."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.path = path
        self._sock = sock
        self._text = ""
        self._cond = threading.Condition()
        self._closed = False
        # A guest restored from a saved boot prints nothing of its boot: the console of the
        # boot that was saved, shown in tails (never scanned for panics: that was then).
        self.history = ""
        self._thread = threading.Thread(target=self._read, name="console", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self.path.open("w", errors="replace") as log:
            while True:
                try:
                    chunk = self._sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                text = chunk.decode(errors="replace").replace("\r\n", "\n")
                log.write(text)
                log.flush()
                with self._cond:
                    self._text += text
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    def drained(self, timeout: float) -> bool:
        """Wait until QEMU closed the console (all output read); False if still open."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def mark(self) -> int:
        """An offset to wait from (wait_for(after=...)): what was printed so far."""
        with self._cond:
            return len(self._text)

    def tail(self, lines: int = 40) -> str:
        with self._cond:
            return self._tail_locked(lines)

    def panic(self) -> str | None:
        """The panic report, if the console shows one."""
        with self._cond:
            return self._panic_locked()

    def lockup(self) -> str | None:
        """The console from the first lockup or stall report on, if it shows one."""
        with self._cond:
            m = LOCKUP.search(self._text)
            if not m:
                return None
            start = self._text.rfind("\n", 0, m.start()) + 1
            return "\n".join(self._text[start:].splitlines()[:40])

    def wait_for(
        self,
        marker: str,
        timeout: float,
        *,
        refuse: str | None = None,
        probe: Callable[[], None] | None = None,
        after: int = 0,
    ) -> None:
        """Block until ``marker`` is printed (after offset ``after``, a mark()). A panic, the
        ``refuse`` marker or a closed console ends it at once; ``probe`` runs every
        HEARTBEAT and raises if the VM is gone (a stopped QEMU prints nothing and never
        closes the console)."""
        deadline = time.monotonic() + timeout
        next_probe = time.monotonic() + HEARTBEAT
        while True:
            with self._cond:
                text = self._text[after:]
                if marker in text:
                    return
                if PANIC.search(text):
                    panic = self._report_locked()
                    raise GuestPanic(
                        f"guest kernel panicked: {panic.splitlines()[0]}", console_tail=panic
                    )
                if refuse is not None and refuse in text:
                    line = next(ln for ln in text.splitlines() if refuse in ln)
                    raise KernelFailure(
                        f"guest init: {line.strip()}", console_tail=self._tail_locked()
                    )
                if self._closed:
                    raise VMLost(
                        "QEMU exited before the guest was ready", console_tail=self._tail_locked()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BootTimeout(
                        f"guest not ready after {timeout:g} s (no '{marker}' on the console)",
                        console_tail=self._tail_locked(),
                    )
                self._cond.wait(min(remaining, HEARTBEAT))
            if probe is not None and time.monotonic() >= next_probe:
                probe()
                next_probe = time.monotonic() + HEARTBEAT

    def _report_locked(self, settle: float = 2.0) -> str:
        """The panic report once it is complete: QEMU closed the console (panic=-1,
        -no-reboot) or ``settle`` seconds passed, so the report is not cut at its first line."""
        deadline = time.monotonic() + settle
        while not self._closed and (left := deadline - time.monotonic()) > 0:
            self._cond.wait(left)
        return self._panic_locked() or self._tail_locked()

    def _panic_locked(self) -> str | None:
        m = PANIC.search(self._text)
        if not m:
            return None
        start = self._text.rfind("\n", 0, m.start()) + 1
        return "\n".join(self._text[start:].splitlines()[:40])

    def _tail_locked(self, lines: int = 40) -> str:
        now = self._text.splitlines()
        if self.history and len(now) < lines:
            then = self.history.splitlines()[-(lines - len(now) - 1) :]
            now = [*then, "--- (restored from the saved boot above; since then:) ---", *now]
        return "\n".join(now[-lines:])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5.0)
        self._sock.close()
