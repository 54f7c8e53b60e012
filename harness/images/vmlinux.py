"""Kernel image formats: turn an x86 bzImage into an ELF vmlinux QEMU can boot via PVH.

Under TCG the bzImage's own decompressor is slow (Debian 6.1's xz payload costs ~4 s before
the kernel even starts its clock). QEMU boots an ELF vmlinux with a PVH entry note
directly, so images carry the decompressed kernel when it has one (CONFIG_PVH=y).
"""

from __future__ import annotations

import lzma
import struct
import subprocess
import zlib

PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point (include/xen/interface/elfnote.h)


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF inside a bzImage, or None if its format or compression is not handled."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    (version,) = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x208:  # payload_offset/length appeared in boot protocol 2.08
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start : start + length]
    try:
        elf = _decompress(payload)
    except (lzma.LZMAError, zlib.error, subprocess.CalledProcessError, OSError):
        return None
    return elf if elf and elf[:4] == b"\x7fELF" else None


def _decompress(data: bytes) -> bytes | None:
    if data.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        # The kernel appends the decompressed size after the frame: trim it for zstd.
        return subprocess.run(
            ["zstd", "-dc"], input=data[:-4], capture_output=True, check=True
        ).stdout
    if data.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    return None


def has_pvh_entry(elf: bytes) -> bool:
    """True if a 64-bit little-endian ELF carries a Xen PHYS32_ENTRY (PVH) note."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize
        )
        if p_type == PT_NOTE and _notes_have(elf[p_offset : p_offset + p_filesz]):
            return True
    return False


def _notes_have(notes: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        pos += 12 + _align4(namesz) + _align4(descsz)
    return False


def _align4(n: int) -> int:
    return (n + 3) & ~3
