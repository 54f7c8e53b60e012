"""A synchronous face for qemu.qmp, plus an event log that tests wait on.

qemu.qmp is asyncio-only; the harness and its tests are synchronous. One event-loop thread
per machine runs the QMPClient; callers block on futures. Every event QEMU sends is kept in
an ``EventLog`` so a wait can start from a mark taken *before* the command that causes the
event: no race between issuing ``device_add`` and listening for its acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError

from harness.errors import InfrastructureError, QMPCommandError, VMLost, WaitTimeout
from harness.liveness import HEARTBEAT
from harness.transcript import Step, Transcript

T = TypeVar("T")
log = logging.getLogger("memhp.qmp")
Event = dict[str, Any]
Match = Callable[[Event], bool]


class EventTimeout(WaitTimeout):
    """An expected QMP event did not arrive in time although the VM was alive (QEMU answers
    QMP, the guest SSH). Neutral: the caller that knows what was due judges it."""

    def __init__(self, what: str, timeout: float, seen: list[Event]) -> None:
        names = ", ".join(e["event"] for e in seen[-8:]) or "none"
        super().__init__(
            f"no {what} within {timeout:g} s although the guest is alive (events since: {names})"
        )
        self.what = what
        self.timeout = timeout
        self.seen = seen


# Called with deep=False every HEARTBEAT of a wait, deep=True before a wait gives up:
# raises (VMLost, GuestPanic) when the VM is gone.
Probe = Callable[[bool], None]


class EventLog:
    """Every QMP event of one machine, in arrival order, waitable from any thread."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._lost: str | None = None
        self.probe: Probe | None = None
        self.transcript: Transcript | None = None  # records each wait (harness.transcript)

    def append(self, event: Event) -> None:
        log.debug("event %s %s", event.get("event"), event.get("data", {}))
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def lose(self, reason: str) -> None:
        """The machine is gone: wake every waiter with VMLost."""
        with self._cond:
            if self._lost is None:
                self._lost = reason
            self._cond.notify_all()

    @property
    def lost(self) -> str | None:
        return self._lost

    def mark(self) -> int:
        with self._cond:
            return len(self._events)

    def since(self, mark: int) -> list[Event]:
        with self._cond:
            return list(self._events[mark:])

    def wait(self, match: Match, *, after: int, timeout: float, what: str) -> Event:
        """First event after ``after`` that ``match`` accepts; EventTimeout if none comes
        while the VM lives, VMLost (or the kernel's panic) as soon as it does not."""
        event = self._wait(match, after, timeout, what, None, HEARTBEAT)
        assert event is not None  # no poll: only an event ends the wait
        return event

    def wait_or_poll(
        self,
        match: Match,
        poll: Callable[[], bool],
        *,
        after: int,
        timeout: float,
        what: str,
        every: float = 0.05,
    ) -> Event | None:
        """Like ``wait``, but also done when ``poll()`` says so, asked every ``every`` s: for
        a state QEMU reports through a throttled event (MEMORY_DEVICE_SIZE_CHANGE: one a
        second per device), whose current value a query returns at once. The event, or None
        when the poll said done first."""
        return self._wait(match, after, timeout, what, poll, every)

    def _wait(
        self,
        match: Match,
        after: int,
        timeout: float,
        what: str,
        poll: Callable[[], bool] | None,
        every: float,
    ) -> Event | None:
        start = time.monotonic()
        deadline, probed = start + timeout, start
        pos = after
        name, data = getattr(match, "event", (what, {}))
        if self.transcript is not None:
            self.transcript.add(Step("event", name, dict(data), timeout=timeout))
        while True:
            with self._cond:
                event, pos = self._first(match, pos)
                if event is None and self._lost is None:
                    remaining = deadline - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(min(remaining, every))
                        event, pos = self._first(match, pos)
                if event is not None:
                    return event
                if self._lost is not None:
                    raise VMLost(f"lost the VM while waiting for {what}: {self._lost}")
                now = time.monotonic()
                expired = now >= deadline
            if poll is not None and poll():  # outside the lock: polls run QMP commands
                return None
            if self.probe is not None and (expired or now - probed >= HEARTBEAT):
                probed = now
                self.probe(expired)
            if expired:
                raise EventTimeout(what, timeout, self.since(after))

    def _first(self, match: Match, pos: int) -> tuple[Event | None, int]:
        for event in self._events[pos:]:
            if match(event):
                return event, pos
        return None, len(self._events)


def event_is(name: str, **data: object) -> Match:
    """Match an event by name and by equality of (nested, dotted) data fields."""

    def match(event: Event) -> bool:
        if event.get("event") != name:
            return False
        for key, want in data.items():
            value: Any = event.get("data", {})
            for part in key.split("__"):
                value = value.get(part) if isinstance(value, dict) else None
            if value != want:
                return False
        return True

    return described(match, (name,), data)


def described(match: Match, names: tuple[str, ...], data: dict[str, object]) -> Match:
    """``match``, saying for the transcript (harness.transcript) which events it waits for:
    their names and the data fields they carry (``a__b``: field b of a)."""
    match.event = ("|".join(names), data)  # type: ignore[attr-defined]
    return match


class QMP:
    """QMPClient on its own event-loop thread, with a blocking ``execute``."""

    def __init__(self, name: str) -> None:
        self.events = EventLog()
        self._client = QMPClient(name)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"qmp-{name}", daemon=True
        )
        self._thread.start()
        self._pump: asyncio.Future[None] | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise

    def connect(self, sock: socket.socket, timeout: float = 30.0) -> None:
        try:
            self._run(self._connect(sock), timeout)
        except (QMPError, OSError, EOFError, FutureTimeout) as exc:
            raise InfrastructureError(f"QMP handshake with QEMU failed: {exc!r}") from exc

    async def _connect(self, sock: socket.socket) -> None:
        listener = EventListener()
        self._client.register_listener(listener)
        await self._client.connect(sock)
        self._pump = asyncio.ensure_future(self._drain(listener))

    async def _drain(self, listener: EventListener) -> None:
        async for event in listener:
            self.events.append(dict(event))

    def execute(
        self, command: str, args: dict[str, object] | None = None, timeout: float = 30.0
    ) -> Any:
        """Run a QMP command; QEMU's refusal becomes QMPCommandError with its message, any
        other failure (no answer, connection gone) VMLost."""
        log.debug("> %s %s", command, args or {})
        try:
            reply = self._run(self._client.execute(command, args), timeout)
        except ExecuteError as exc:
            log.debug("< %s refused: %s", command, exc.error.error.desc)
            raise QMPCommandError(command, args, exc.error.error.desc) from None
        except FutureTimeout:
            raise VMLost(f"QMP {command} got no answer in {timeout:g} s") from None
        except (QMPError, OSError, EOFError) as exc:
            raise VMLost(f"QMP connection lost during {command}: {exc!r}") from exc
        log.debug("< %s %s", command, reply)
        return reply

    async def _disconnect(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self._client.disconnect()

    def close(self) -> None:
        """Disconnect and stop the loop thread; safe to call twice."""
        if not self._loop.is_closed():
            # The peer may already be gone: closing is best effort.
            with contextlib.suppress(Exception):
                self._run(self._disconnect(), 5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()
