"""Page-flag pictures: one column per step, one tile per memory block, one pixel per page
(or per few pages for big blocks), coloured by page class."""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.pagemap import COLOURS, PageClass, Snapshot
from harness.report.png import encode_png

BACKGROUND = (255, 255, 255)


TILE_WIDTH = 256  # pixels per tile row


MAX_TILE_PIXELS = 256 * 128  # bigger blocks are drawn with several pages per pixel


GAP = 4  # pixels between tiles and between step columns


def _tile_geometry(pages: int) -> tuple[int, int, int]:
    """(pages per pixel, width, height) of one block's tile."""
    per_pixel = max(1, -(-pages // MAX_TILE_PIXELS))
    pixels = -(-pages // per_pixel)
    width = min(TILE_WIDTH, pixels)
    return per_pixel, width, -(-pixels // width)


def _tile(classes: bytes, per_pixel: int, width: int, height: int) -> list[bytearray]:
    rows = [bytearray(bytes(BACKGROUND) * width) for _ in range(height)]
    for px in range(-(-len(classes) // per_pixel)):
        group = classes[px * per_pixel : (px + 1) * per_pixel]
        colour = COLOURS[PageClass(max(group))]
        y, x = divmod(px, width)
        rows[y][3 * x : 3 * x + 3] = bytes(colour)
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
                canvas[y0 + dy][3 * x0 : 3 * (x0 + tw)] = row
    return encode_png(width, height, canvas)
