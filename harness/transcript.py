"""What was done to one guest, in order: QMP commands, the QMP events waited for, and the
commands run in the guest, with their exit status. ``memhp repro`` turns a failing
scenario's part of it into a script that does the same without memhp
(harness.report.repro)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    kind: str  # "qmp", "event" (waited for) or "guest"
    text: str  # the QMP command, the event's name, the shell command
    data: dict[str, Any] = field(default_factory=dict)  # QMP arguments; event fields matched
    status: int | None = None  # a guest command's exit status
    exercise: bool = False  # a guest command that exercises the kernel (not a read)
    timeout: float = 0.0  # an event wait's bound


class Transcript:
    """Appended to from the scenario's thread and QEMU's event thread alike."""

    def __init__(self) -> None:
        self._steps: list[Step] = []
        self._lock = threading.Lock()

    def add(self, step: Step) -> None:
        with self._lock:
            self._steps.append(step)

    def mark(self) -> int:
        with self._lock:
            return len(self._steps)

    def since(self, mark: int) -> list[Step]:
        with self._lock:
            return list(self._steps[mark:])
