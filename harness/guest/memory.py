"""The guest's memory as sysfs and procfs show it: memory blocks, /proc/meminfo, and the errno
of a refused write to a block's state."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from harness.guest import kpageflags

MEMORY = "/sys/devices/system/memory"


# busybox reports a failed write as "write error: <strerror>": map the text back to errno.
_STRERROR = {os.strerror(code): code for code in errno.errorcode}


@dataclass(frozen=True)
class MemoryBlock:
    """One /sys/devices/system/memory/memoryN."""

    index: int
    state: str  # online, offline, going-offline
    phys_index: int
    valid_zones: tuple[str, ...]  # an online block: its zone; offline: zones it may go to
    node: int | None = None  # the memoryN/nodeK link

    @property
    def online(self) -> bool:
        return self.state == "online"

    @property
    def zone(self) -> str | None:
        """The zone of an online block (None when offline or spanning zones)."""
        if self.online and len(self.valid_zones) == 1 and self.valid_zones[0] != "none":
            return self.valid_zones[0]
        return None


@dataclass(frozen=True)
class MemoryLayout:
    """The memory-block view: block size and every block."""

    block_size: int
    blocks: dict[int, MemoryBlock]

    def covering(self, addr: int, size: int) -> list[MemoryBlock]:
        """Blocks inside [addr, addr + size)."""
        first, last = addr // self.block_size, (addr + size - 1) // self.block_size
        return [b for i, b in sorted(self.blocks.items()) if first <= i <= last]

    def pfns(self, block: MemoryBlock, page_size: int) -> range:
        return kpageflags.pfn_range(block.phys_index * self.block_size, self.block_size, page_size)


def parse_memory(block_size_text: str, grep_output: str) -> MemoryLayout:
    """Parse `cat block_size_bytes`, `grep -H . memory*/{state,phys_index,valid_zones}` and
    lines `memoryN/node:K` (one per memoryN/nodeK link)."""
    fields: dict[int, dict[str, str]] = {}
    for line in grep_output.splitlines():
        m = re.match(r"memory(\d+)/(\w+):(.*)", line)
        if m:
            fields.setdefault(int(m.group(1)), {})[m.group(2)] = m.group(3).strip()
    blocks = {
        n: MemoryBlock(
            index=n,
            state=f.get("state", "?"),
            phys_index=int(f.get("phys_index", f"{n:x}"), 16),
            valid_zones=tuple(f.get("valid_zones", "").split()),
            node=int(f["node"]) if f.get("node", "").isdigit() else None,
        )
        for n, f in fields.items()
    }
    return MemoryLayout(block_size=int(block_size_text.strip(), 16), blocks=blocks)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def write_errno(stderr: str) -> int:
    """errno of a failed shell redirection, from busybox's 'write error: <strerror>'."""
    m = re.search(r"(?:write error|can't create [^:]*): (.+)$", stderr.strip(), re.M)
    if m:
        return _STRERROR.get(m.group(1).strip(), -1)
    return -1
