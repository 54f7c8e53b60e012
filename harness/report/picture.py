"""Page-flag pictures: one column per step, one tile per memory block, one pixel per page
(or per few pages for big blocks), coloured by page class; labelled (the steps, each block's
name, first pfn, state and zone) and with the legend, in memhp's own 5x7 font."""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.font import ADVANCE, HEIGHT, glyph, width_of
from harness.report.pagemap import COLOURS, LABELS, PageClass, Snapshot
from harness.report.png import encode_png

BACKGROUND = (255, 255, 255)


TILE_WIDTH = 256  # pixels per tile row


MAX_TILE_PIXELS = 256 * 128  # bigger blocks are drawn with several pages per pixel


GAP = 4  # pixels between tiles and between step columns


SCALE = 2  # font pixels per pixel of the 5x7 glyphs
LINE = (HEIGHT + 2) * SCALE  # a line of text
LEFT = GAP + width_of("pfn 0x1000000", SCALE) + GAP  # the block labels' margin
INK = (30, 30, 30)


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


def render_png(snapshots: Sequence[Snapshot], title: str = "") -> bytes:
    """All snapshots side by side (one column per step, its name on top), one tile per
    block (its memory block and first pfn on the left, its state and zone under the tile),
    ``title`` above and the colour legend below: a PNG opened on its own says what it shows."""
    if not snapshots:
        raise ValueError("no snapshots to draw")
    per_pixel, tw, th = _tile_geometry(max(s.pages_per_block for s in snapshots))
    nblocks = max(len(s.blocks) for s in snapshots)
    fit = max(1, tw // (ADVANCE * SCALE))  # characters a column's text may take
    headers = [_wrap(s.step, fit, 2) for s in snapshots]
    top = GAP + (LINE if title else 0) + 2 * LINE
    row = th + LINE + GAP  # a tile and its state line
    legend = [(COLOURS[c], LABELS[c]) for c in PageClass]
    scale_note = f"a pixel: {per_pixel} page{'s' if per_pixel > 1 else ''}, row by row from the pfn"
    width = max(
        LEFT + len(snapshots) * (tw + GAP) + GAP,
        LEFT + LINE + max(width_of(t, SCALE) for _, t in legend) + GAP,
        LEFT + width_of(scale_note, SCALE) + GAP,
        GAP + width_of(title, SCALE) + GAP,
    )
    height = top + nblocks * row + GAP + (len(legend) + 1) * LINE + GAP
    canvas = [bytearray(bytes(BACKGROUND) * width) for _ in range(height)]
    if title:
        _text(canvas, GAP, GAP, title)
    for col, (snap, lines) in enumerate(zip(snapshots, headers, strict=True)):
        x0 = LEFT + col * (tw + GAP)
        for n, line in enumerate(lines):
            _text(canvas, x0, top - 2 * LINE + n * LINE, line)
        for i, block in enumerate(snap.blocks):
            y0 = top + i * row
            for dy, pixels in enumerate(_tile(snap.block_classes(i), per_pixel, tw, th)):
                canvas[y0 + dy][3 * x0 : 3 * (x0 + tw)] = pixels
            state = f"{block.state} {block.zone or ''}".strip()
            _text(canvas, x0, y0 + th + 2, _wrap(state, fit, 1)[0])
    for i in range(nblocks):
        y0 = top + i * row
        _text(canvas, GAP, y0, _block_name(snapshots, i))
        _text(
            canvas,
            GAP,
            y0 + LINE,
            f"pfn {snapshots[0].start_pfn + i * snapshots[0].pages_per_block:#x}",
        )
    y0 = top + nblocks * row + GAP
    for n, (rgb, label) in enumerate(legend):
        y = y0 + n * LINE
        for dy in range(LINE - 4):
            canvas[y + dy][3 * LEFT : 3 * (LEFT + LINE - 4)] = bytes(rgb) * (LINE - 4)
        _text(canvas, LEFT + LINE, y, label)
    _text(canvas, LEFT, y0 + len(legend) * LINE, scale_note)
    return encode_png(width, height, canvas)


def _block_name(snapshots: Sequence[Snapshot], i: int) -> str:
    """The memory block of row ``i`` (in the first step that has it)."""
    for snap in snapshots:
        if i < len(snap.blocks) and snap.blocks[i].index is not None:
            return f"memory{snap.blocks[i].index}"
    return "no block"


def _wrap(text: str, fit: int, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines of ``fit`` characters (the last one cut short)."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and len(line) + 1 + len(words[0]) <= fit:
            line += " " + words.pop(0)
        out.append(line)
    if words or any(len(line) > fit for line in out):
        out[-1] = (out[-1] + " " + " ".join(words)).strip()[: max(1, fit - 1)] + "*"
    return out or [""]


def _text(canvas: list[bytearray], x: int, y: int, text: str) -> None:
    """``text`` in the 5x7 font at SCALE, its top left at (x, y), clipped to the canvas."""
    ink = bytes(INK) * SCALE
    for n, ch in enumerate(text):
        left = x + n * ADVANCE * SCALE
        for gx, gy in glyph(ch):
            px = left + gx * SCALE
            if px + SCALE > len(canvas[0]) // 3:
                return
            for dy in range(SCALE):
                if y + gy * SCALE + dy < len(canvas):
                    canvas[y + gy * SCALE + dy][3 * px : 3 * (px + SCALE)] = ink
