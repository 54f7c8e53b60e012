"""How many scenarios run at once: what the user asked (-n), else one per core while the
memory lasts for each worker's guests.

Under TCG a busy guest keeps one host core busy (harness.qemu.accel runs x86 guests with
one translation thread), so more workers than cores only slow each other down; and each
worker holds the guest under test plus at most ``MEMHP_IDLE_GUESTS`` (default 1) idle
ones (harness.plugin.pool), which is what ``PER_WORKER`` budgets.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import UsageError

GiB = 1 << 30
# The guest under test (1 GiB boot RAM, up to ~2 GiB once it hot-adds and fills memory,
# plus QEMU's own ~200 MiB) and the pool's idle ones (a restored idle guest: ~1 GiB).
PER_WORKER = 4 * GiB


@dataclass(frozen=True)
class Workers:
    count: int
    why: str

    def describe(self) -> str:
        """What a run says once its input is checked (bad input stays one line)."""
        what = "one scenario at a time" if self.count == 1 else f"{self.count} scenarios at a time"
        return f"{what} ({self.why})"


def choose(requested: int | None) -> Workers:
    """``requested`` (-n) when given, else min(cores, available memory / PER_WORKER)."""
    if requested is not None:
        return Workers(requested, "-n")
    cores = len(os.sched_getaffinity(0))
    available = mem_available()
    by_memory = max(1, available // PER_WORKER)
    count = max(1, min(cores, by_memory))
    return Workers(
        count,
        f"{cores} cores, {available / GiB:.1f} GiB available at {PER_WORKER // GiB} GiB a worker; "
        "-n N to choose, -n 1 for one at a time",
    )


def mem_available() -> int:
    """MemAvailable of /proc/meminfo in bytes (what can be had without swapping)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemAvailable")


def idle_limit() -> int:
    """MEMHP_IDLE_GUESTS: how many idle guests a worker keeps besides the next scenario's."""
    text = os.environ.get("MEMHP_IDLE_GUESTS", "1")
    if not text.isdigit():
        raise UsageError(f"MEMHP_IDLE_GUESTS={text!r}: give a number of guests (0 or more)")
    return int(text)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number, ``low`` or more."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = low - 1
        if n < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {low} or more")
        return n

    return parse


def positive(text: str) -> int:
    """argparse type of -n: a whole number of workers, at least 1."""
    try:
        return at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of workers: give 1 or more (1: one at a time)"
        ) from None
