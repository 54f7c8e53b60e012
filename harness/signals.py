"""SIGTERM and SIGHUP end a run like Ctrl-C: what CI systems and ``timeout`` send must
still end every QEMU, remove the temp dirs and write the summary and reports.

The first such signal raises KeyboardInterrupt in the main thread (pytest then tears its
fixtures down and reports what finished) and is passed on to this process's own children
(pytest-xdist workers), so that they wind down the same way instead of being killed. Later
ones are ignored while that cleanup runs; SIGKILL remains for the impatient, and QEMU dies
with its harness then too (setpriv --pdeathsig).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


def interrupt_on_termination() -> None:
    """Install the handlers (main thread only; handlers someone else set are kept)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)


def received() -> str | None:
    """The name of the first terminating signal this process handled (None: none)."""
    return signal.Signals(_received[0]).name if _received else None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _received:
        print(f"memhp: {name} again: still cleaning up", file=sys.stderr, flush=True)
        return
    _received.append(signum)
    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    raise KeyboardInterrupt(f"memhp: {name} received")


def _children() -> list[int]:
    """This process's direct children other than QEMU (the harness ends QEMU itself)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if not Path(f"/proc/{pid}/comm").read_text().startswith("qemu"):
                out.append(pid)
    return out
