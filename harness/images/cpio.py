"""The initramfs writer: an uncompressed newc cpio archive, written without root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def write_cpio(root: Path, dest: Path) -> None:
    """An uncompressed newc archive of ``root`` with /dev/console added.

    Uncompressed on purpose: under TCG the kernel's inflate costs more than QEMU copying a
    few extra MiB. Owners are forced to root; device nodes need no privileges this way.
    """
    with dest.open("wb") as out:
        ino = 1
        for path in _walk(root):
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                data = os.readlink(path).encode()
            elif path.is_file():
                data = path.read_bytes()
            else:
                data = b""
            out.write(_cpio_entry(rel, st.st_mode, data, ino))
            ino += 1
        out.write(_cpio_entry("dev/console", 0o020600, b"", ino, rdev=(5, 1)))
        out.write(_cpio_entry("TRAILER!!!", 0, b"", 0))


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root, parents first, without following symlinks."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def _cpio_entry(
    name: str, mode: int, data: bytes, ino: int, rdev: tuple[int, int] = (0, 0)
) -> bytes:
    namez = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0)
    header = b"070701" + b"".join(b"%08x" % f for f in fields)
    return header + namez + _pad(len(header) + len(namez)) + data + _pad(len(data))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)
