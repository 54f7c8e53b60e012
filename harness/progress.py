"""Progress lines for long steps (downloads, image builds, boots).

Output goes to a replaceable sink: stderr by default, the pytest terminal when the plugin is
active (pytest would otherwise capture it until the test ends).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    def __init__(self) -> None:
        self.sink: Sink = _stderr
        self.quiet = bool(os.environ.get("MEMHP_QUIET"))

    def note(self, message: str) -> None:
        if not self.quiet:
            self.sink(f"memhp: {message}")

    @contextmanager
    def __call__(self, message: str) -> Iterator[None]:
        """Announce a step, then say how long it took (or that it failed)."""
        self.note(f"{message} ...")
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.note(f"{message}: failed after {time.monotonic() - start:.1f} s")
            raise
        self.note(f"{message}: done in {time.monotonic() - start:.1f} s")


progress = Progress()
