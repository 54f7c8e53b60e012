"""--memhp-shard K/N: one CI runner's part of the selected items, deterministically.

N runners given K = 1..N run every item exactly once. Items that share a booted guest (same
target, same boot configuration, not fresh) form one group and go to one shard, so no guest
boots twice for them. Groups are dealt out largest first to the least loaded shard (ties to
the lower shard), weighed by the durations earlier runs recorded (--memhp-durations-from
DIR...), else by count; every item, everywhere, sorts by node id first, so every runner (and
every xdist worker) computes the same split.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.plugin.pool import Boot
from harness.preflight import Target
from harness.report.results import load

BOOT_SECONDS = 5.0  # what a group pays once for its guest, on top of its items
UNKNOWN_SECONDS = 10.0  # an item no earlier run timed, when no run timed anything


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as given
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise UsageError(f"--shard {text}: give K/N with 1 <= K <= N, e.g. 2/3")
        return cls(int(m.group(1)), int(m.group(2)))


def durations(dirs: list[Path]) -> dict[str, float]:
    """Node id -> seconds, from the result records of earlier runs (the latest wins)."""
    out: dict[str, tuple[float, float]] = {}
    for d in dirs:
        for r in load(d):
            if r.nodeid not in out or r.start_time > out[r.nodeid][0]:
                out[r.nodeid] = (r.start_time, r.duration)
    return {nodeid: seconds for nodeid, (_, seconds) in out.items()}


def group_key(item: pytest.Item) -> str:
    """Items with the same key share a booted guest; others are their own group."""
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("memhp_target") if callspec else None
    if not isinstance(target, Target):
        return item.nodeid
    boot, fresh = Boot.of(item, target.arch)
    return item.nodeid if fresh else f"{target.id} {boot!r}"


def split(items: list[pytest.Item], shard: Shard, timed: dict[str, float]) -> list[pytest.Item]:
    """The items of ``shard``, in their collection order."""
    known = [timed[i.nodeid] for i in items if i.nodeid in timed]
    default = statistics.median(known) if known else UNKNOWN_SECONDS
    groups: dict[str, list[pytest.Item]] = {}
    for item in sorted(items, key=lambda i: i.nodeid):
        groups.setdefault(group_key(item), []).append(item)

    def weight(members: list[pytest.Item]) -> float:
        return BOOT_SECONDS + sum(timed.get(i.nodeid, default) for i in members)

    load_of = [0.0] * shard.count
    mine: set[str] = set()
    for _key, members in sorted(groups.items(), key=lambda kv: (-weight(kv[1]), kv[0])):
        target = min(range(shard.count), key=lambda s: (load_of[s], s))
        load_of[target] += weight(members)
        if target == shard.index - 1:
            mine.update(i.nodeid for i in members)
    return [i for i in items if i.nodeid in mine]
