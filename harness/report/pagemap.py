"""Page-flag maps: what each page of a hot-plugged range looked like after each step.

A snapshot keeps one class byte per page (free, reserved, PageOffline, self-hosted memmap,
...) plus each block's state and zone. ``render_png`` draws a test's snapshots side by side:
one column per step, one tile per memory block, one pixel per page (or per group of pages
for big blocks), so "the second block stayed reserved after onlining" is visible at a glance.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.guest.kpageflags import KPF, has


class PageClass(enum.IntEnum):
    """What a page is, for the picture; the order is the drawing priority (highest last)."""

    NO_FLAGS = 0
    IN_USE = 1
    FREE = 2
    OFFLINE = 3
    MEMMAP = 4
    RESERVED = 5
    NOPAGE = 6


COLOURS: dict[PageClass, tuple[int, int, int]] = {
    PageClass.NO_FLAGS: (236, 236, 236),
    PageClass.IN_USE: (45, 95, 200),
    PageClass.FREE: (60, 170, 80),
    PageClass.OFFLINE: (240, 160, 40),
    PageClass.MEMMAP: (140, 70, 200),
    PageClass.RESERVED: (205, 35, 35),
    PageClass.NOPAGE: (170, 170, 170),
}
LABELS: dict[PageClass, str] = {
    PageClass.NO_FLAGS: "no flags (offline on >= 6.16)",
    PageClass.IN_USE: "in use",
    PageClass.FREE: "free (BUDDY)",
    PageClass.OFFLINE: "PageOffline",
    PageClass.MEMMAP: "self-hosted memmap (OWNER_PRIVATE)",
    PageClass.RESERVED: "RESERVED",
    PageClass.NOPAGE: "no memmap (NOPAGE)",
}


def classify(value: int) -> PageClass:
    """One /proc/kpageflags word -> its class (the most telling flag wins)."""
    if has(value, KPF.NOPAGE):
        return PageClass.NOPAGE
    if has(value, KPF.RESERVED):
        return PageClass.RESERVED
    if has(value, KPF.OWNER_PRIVATE) and not has(value, KPF.BUDDY):
        return PageClass.MEMMAP
    if has(value, KPF.OFFLINE):
        return PageClass.OFFLINE
    if has(value, KPF.BUDDY):
        return PageClass.FREE
    return PageClass.NO_FLAGS if value == 0 else PageClass.IN_USE


@dataclass(frozen=True)
class BlockView:
    index: int | None  # /sys/devices/system/memory/memoryN; None: no such block (removed)
    state: str  # online, offline, ... or "absent"
    zone: str | None


@dataclass(frozen=True)
class Snapshot:
    step: str  # e.g. "hot-added", "online_movable", "offline"
    start_pfn: int
    pages_per_block: int
    blocks: tuple[BlockView, ...]  # one per block-sized piece of the range
    classes: bytes  # one PageClass per page of the range

    @classmethod
    def of(
        cls,
        step: str,
        start_pfn: int,
        pages_per_block: int,
        blocks: Sequence[BlockView],
        flags: Sequence[int],
    ) -> Snapshot:
        classes = bytes(classify(v) for v in flags)
        # /proc/kpageflags ends at max_pfn: pages past it have no memmap at all.
        missing = len(blocks) * pages_per_block - len(classes)
        return cls(
            step,
            start_pfn,
            pages_per_block,
            tuple(blocks),
            classes + bytes([PageClass.NOPAGE]) * max(0, missing),
        )

    def block_classes(self, i: int) -> bytes:
        return self.classes[i * self.pages_per_block : (i + 1) * self.pages_per_block]

    def histogram(self, i: int) -> dict[str, int]:
        """Block i's page classes by name, most common first."""
        counts = Counter(self.block_classes(i))
        return {PageClass(c).name: n for c, n in counts.most_common()}
