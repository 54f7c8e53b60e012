"""A PNG encoder in pure Python (zlib): memhp's pictures need no imaging library."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence


def encode_png(width: int, height: int, rows: Sequence[bytes | bytearray]) -> bytes:
    """A truecolour 8-bit PNG (no dependency: zlib and a few chunks)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes(r) for r in rows)  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
