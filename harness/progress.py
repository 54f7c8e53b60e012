"""Progress lines for long steps (downloads, image builds, boots), and memhp's log.

Progress goes to a replaceable sink: stderr by default, the pytest terminal when the plugin
is active (pytest would otherwise capture it until the test ends). Every line also goes to
the ``memhp`` logger at INFO, so pytest's captured log (and with it a failing scenario's
JUnit entry) has each boot, plug and wait with its duration; QMP traffic is logged at DEBUG
by ``memhp.qmp``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

Sink = Callable[[str], None]
log = logging.getLogger("memhp")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    def __init__(self) -> None:
        self.sink: Sink = _stderr
        self.quiet = bool(os.environ.get("MEMHP_QUIET"))

    def note(self, message: str) -> None:
        log.info(message)
        if not self.quiet:
            self.sink(f"memhp: {message}")

    @contextmanager
    def __call__(self, message: str) -> Iterator[None]:
        """Announce a step, then say how long it took (or that it failed)."""
        self.note(f"{message} ...")
        start = time.monotonic()
        try:
            yield
        except BaseException as exc:
            self.note(
                f"{message}: failed after {time.monotonic() - start:.1f} s ({type(exc).__name__})"
            )
            raise
        self.note(f"{message}: done in {time.monotonic() - start:.1f} s")


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Log ``what`` and its duration at INFO, without a progress line (frequent steps)."""
    start = time.monotonic()
    try:
        yield
    except BaseException as exc:
        log.info("%s: failed after %.2f s (%s)", what, time.monotonic() - start, type(exc).__name__)
        raise
    log.info("%s: %.2f s", what, time.monotonic() - start)


progress = Progress()


P = ParamSpec("P")
R = TypeVar("R")


def logged(method: Callable[P, R]) -> Callable[P, R]:
    """Log each call of a scenario step (its arguments and duration) at INFO."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        shown = [str(a) for a in args[1:]] + [f"{k}={v}" for k, v in kwargs.items()]
        with timed(f"{method.__name__}({', '.join(shown)})"):
            return method(*args, **kwargs)

    return wrapper
