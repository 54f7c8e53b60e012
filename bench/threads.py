"""What the benchmarks that run guests in parallel share: N long-lived worker threads (QEMU's
parent-death signal follows the thread that started it, so each worker starts its own) run
until done, and Ctrl-C lets each finish the guest it has."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def run_workers(worker: Callable[[int], None], jobs: int, stop: threading.Event, name: str) -> None:
    """``worker(i)`` in ``jobs`` threads until they return; on Ctrl-C set ``stop`` and wait."""
    threads = [threading.Thread(target=worker, args=(w,), name=f"{name}-{w}") for w in range(jobs)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        print("interrupted: finishing the guests under way", file=sys.stderr)
        for t in threads:
            t.join()
