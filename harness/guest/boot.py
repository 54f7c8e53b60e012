"""What one boot of the guest is: kernel release and build, command line, page, pageblock
and memory-block sizes, the page_ext line of its boot log, the memmap_on_memory mode the
kernel took, and what its VMCOREINFO says of itself (sizeof(struct page), the section size),
read in one command. What the kernel reports is the fact; nothing here is assumed from a
version."""

from __future__ import annotations

from dataclasses import dataclass

from harness.guest.memory import MEMORY

_SEP = "@@memhp@@"
MEMMAP_ON_MEMORY = "/sys/module/memory_hotplug/parameters/memmap_on_memory"
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
        # Y, N or force as the kernel took it (mm/memory_hotplug.c); no file without
        # CONFIG_MHP_MEMMAP_ON_MEMORY
        f"cat {MEMMAP_ON_MEMORY} 2>/dev/null; true",
        # The kernel's own VMCOREINFO note, in the notes at the start of /proc/kcore (which
        # selects VMCORE_INFO): read 64 KiB, never the whole (terabyte-sized) file.
        "dd if=/proc/kcore bs=65536 count=1 2>/dev/null | "
        "grep -a -oE '^(SIZE\\(page\\)|NUMBER\\(SECTION_SIZE_BITS\\))=[0-9]+'; true",
        # how the u64s of /proc/kpageflags are laid out
        # (s390x is big-endian); the file is there since v3.15
        "cat /sys/kernel/cpu_byteorder 2>/dev/null || echo little",
    ]
)
PARTS = 11


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
    memmap_on_memory: str | None  # the parameter as the kernel reads it; None: no parameter
    struct_page: int | None  # VMCOREINFO SIZE(page); None: no /proc/kcore note
    section_bits: int | None  # VMCOREINFO NUMBER(SECTION_SIZE_BITS)
    byteorder: str = "little"  # "little" or "big"


def parse_boot(text: str) -> Boot:
    """The output of BOOT_READ."""
    parts = [p.strip() for p in text.split(_SEP)]
    if len(parts) != PARTS:
        raise ValueError(f"the boot read printed {len(parts)} parts, not {PARTS}: {text[:200]!r}")
    release, build, cmdline, smaps, pagetypeinfo, block_size, blocks, page_ext = parts[:8]
    memmap_on_memory, vmcoreinfo, byteorder = parts[8:]
    if byteorder not in ("little", "big"):
        raise ValueError(f"cpu_byteorder is {byteorder!r}")
    info = dict(line.split("=", 1) for line in vmcoreinfo.splitlines() if "=" in line)
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
        memmap_on_memory=memmap_on_memory or None,
        struct_page=int(info["SIZE(page)"]) if "SIZE(page)" in info else None,
        section_bits=(
            int(info["NUMBER(SECTION_SIZE_BITS)"]) if "NUMBER(SECTION_SIZE_BITS)" in info else None
        ),
        byteorder=byteorder,
    )
