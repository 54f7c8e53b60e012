"""Page-flag pictures: one column per step, one tile per memory block, one pixel per page
(or per few pages for big blocks), coloured by page class."""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.pagemap import COLOURS, Snapshot
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


def _channel(ch: int) -> bytes:
    """A translate table: page class -> channel ``ch`` of its colour."""
    table = bytearray(256)
    for cls, rgb in COLOURS.items():
        table[cls] = rgb[ch]
    return bytes(table)


_CHANNELS = tuple(_channel(ch) for ch in range(3))


def _tile(classes: bytes, per_pixel: int, width: int, height: int) -> list[bytearray]:
    """One block's rows of RGB pixels; a pixel of several pages shows the highest class.
    Colours go through bytes.translate, one channel at a time: a pixel loop in Python was
    most of a recording worker's CPU (two of them share two cores with the guests)."""
    if per_pixel > 1:
        classes = bytes(max(classes[i : i + per_pixel]) for i in range(0, len(classes), per_pixel))
    pixels = bytearray(3 * len(classes))
    for ch, table in enumerate(_CHANNELS):
        pixels[ch::3] = classes.translate(table)
    pixels += bytes(BACKGROUND) * (width * height - len(classes))
    return [pixels[3 * width * y : 3 * width * (y + 1)] for y in range(height)]


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
