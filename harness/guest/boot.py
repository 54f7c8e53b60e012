"""What one boot of the guest is: kernel release and build, command line, page, pageblock
and memory-block sizes, and the page_ext line of its boot log, read in one command."""

from __future__ import annotations

from dataclasses import dataclass

from harness.guest.memory import MEMORY

_SEP = "@@memhp@@"
BOOT_READ = f"; echo {_SEP}; ".join(
    [
        "uname -r",
        "uname -v",
        "cat /proc/cmdline",
        "grep -m1 KernelPageSize /proc/self/smaps",
        "grep -m1 'Page block order' /proc/pagetypeinfo",
        f"cat {MEMORY}/block_size_bytes",
        f"set -- {MEMORY}/memory[0-9]*; echo $#",  # blocks at the first read: builtins only
        # page_ext tables' size (mm/page_ext.c prints it at boot); none without PAGE_EXTENSION
        "dmesg | grep -m1 'bytes of page_ext'; true",
    ]
)


@dataclass(frozen=True)
class Boot:
    release: str  # uname -r
    build: str  # uname -v
    cmdline: tuple[str, ...]
    page_size: int
    pageblock_size: int  # bytes
    block_size: int  # bytes per memory block
    blocks: int  # memory blocks when this boot was first read (before any test plugged)
    page_ext_line: str  # "allocated N bytes of page_ext", or ""


def parse_boot(text: str) -> Boot:
    """The output of BOOT_READ."""
    parts = [p.strip() for p in text.split(_SEP)]
    if len(parts) != 8:
        raise ValueError(f"the boot read printed {len(parts)} parts, not 8: {text[:200]!r}")
    release, build, cmdline, smaps, pagetypeinfo, block_size, blocks, page_ext = parts
    page_size = int(smaps.split()[1]) * 1024
    return Boot(
        release=release,
        build=build,
        cmdline=tuple(cmdline.split()),
        page_size=page_size,
        pageblock_size=page_size << int(pagetypeinfo.split(":")[1]),
        block_size=int(block_size, 16),
        blocks=int(blocks),
        page_ext_line=page_ext,
    )
