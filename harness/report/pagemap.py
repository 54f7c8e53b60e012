"""Page-flag maps: what each page of a hot-plugged range looked like after each step.

A snapshot keeps one class byte per page (free, reserved, PageOffline, self-hosted memmap,
...) plus each block's state and zone. ``render_png`` draws a test's snapshots side by side:
one column per step, one tile per memory block, one pixel per page (or per group of pages
for big blocks), so "the second block stayed reserved after onlining" is visible at a glance.
"""

from __future__ import annotations

import enum
import struct
import zlib
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
BACKGROUND = (255, 255, 255)
TILE_WIDTH = 256  # pixels per tile row
MAX_TILE_PIXELS = 256 * 128  # bigger blocks are drawn with several pages per pixel
GAP = 4  # pixels between tiles and between step columns


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
    def of(cls, step: str, start_pfn: int, pages_per_block: int,
           blocks: Sequence[BlockView], flags: Sequence[int]) -> Snapshot:
        classes = bytes(classify(v) for v in flags)
        # /proc/kpageflags ends at max_pfn: pages past it have no memmap at all.
        missing = len(blocks) * pages_per_block - len(classes)
        return cls(step, start_pfn, pages_per_block, tuple(blocks),
                   classes + bytes([PageClass.NOPAGE]) * max(0, missing))

    def block_classes(self, i: int) -> bytes:
        return self.classes[i * self.pages_per_block:(i + 1) * self.pages_per_block]

    def histogram(self, i: int) -> dict[str, int]:
        """Block i's page classes by name, most common first."""
        counts = Counter(self.block_classes(i))
        return {PageClass(c).name: n for c, n in counts.most_common()}


def _tile_geometry(pages: int) -> tuple[int, int, int]:
    """(pages per pixel, width, height) of one block's tile."""
    per_pixel = max(1, -(-pages // MAX_TILE_PIXELS))
    pixels = -(-pages // per_pixel)
    width = min(TILE_WIDTH, pixels)
    return per_pixel, width, -(-pixels // width)


def _tile(classes: bytes, per_pixel: int, width: int, height: int) -> list[bytearray]:
    rows = [bytearray(bytes(BACKGROUND) * width) for _ in range(height)]
    for px in range(-(-len(classes) // per_pixel)):
        group = classes[px * per_pixel:(px + 1) * per_pixel]
        colour = COLOURS[PageClass(max(group))]
        y, x = divmod(px, width)
        rows[y][3 * x:3 * x + 3] = bytes(colour)
    return rows


def render_png(snapshots: Sequence[Snapshot]) -> bytes:
    """All snapshots side by side (one column per step), one tile per block."""
    if not snapshots:
        raise ValueError("no snapshots to draw")
    per_pixel, tw, th = _tile_geometry(max(s.pages_per_block for s in snapshots))
    nblocks = max(len(s.blocks) for s in snapshots)
    width = len(snapshots) * (tw + GAP) + GAP
    height = nblocks * (th + GAP) + GAP
    canvas = [bytearray(bytes(BACKGROUND) * width) for _ in range(height)]
    for col, snap in enumerate(snapshots):
        x0 = GAP + col * (tw + GAP)
        for i in range(len(snap.blocks)):
            y0 = GAP + i * (th + GAP)
            for dy, row in enumerate(_tile(snap.block_classes(i), per_pixel, tw, th)):
                canvas[y0 + dy][3 * x0:3 * (x0 + tw)] = row
    return encode_png(width, height, canvas)


def encode_png(width: int, height: int, rows: Sequence[bytes | bytearray]) -> bytes:
    """A truecolour 8-bit PNG (no dependency: zlib and a few chunks)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes(r) for r in rows)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
