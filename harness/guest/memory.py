"""The guest's memory as sysfs and procfs show it: memory blocks, /proc/meminfo, and the errno
of a refused write to a block's state."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from harness.errors import InfrastructureError
from harness.guest import kpageflags
from harness.guest.files import Files

MEMORY = "/sys/devices/system/memory"
# The memory-block view, for files.command: block size, each block's files, its node link.
LAYOUT_FILES = (
    f"{MEMORY}/block_size_bytes",
    f"{MEMORY}/memory*/state",
    f"{MEMORY}/memory*/phys_index",
    f"{MEMORY}/memory*/valid_zones",
)
LAYOUT_LINKS = (f"{MEMORY}/memory*/node[0-9]*",)
_BLOCK_FILE = re.compile(rf"{MEMORY}/memory(\d+)/(state|phys_index|valid_zones|node(\d+))$")

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


def parse_memory(files: Files) -> MemoryLayout:
    """The memory blocks in ``files`` (read with LAYOUT_FILES and LAYOUT_LINKS)."""
    fields: dict[int, dict[str, str]] = {}
    for path, text in files.items():
        m = _BLOCK_FILE.match(path)
        if m:
            name, value = ("node", m[3]) if m[3] else (m[2], text.strip())
            fields.setdefault(int(m[1]), {})[name] = value
    blocks = {
        n: MemoryBlock(
            index=n,
            state=f.get("state", "?"),
            phys_index=int(f.get("phys_index", f"{n:x}"), 16),
            valid_zones=tuple(f.get("valid_zones", "").split()),
            node=int(f["node"]) if "node" in f else None,
        )
        for n, f in fields.items()
    }
    size = files.get(f"{MEMORY}/block_size_bytes")
    if size is None:  # every kernel with memory hotplug has it: the read itself went wrong
        raise InfrastructureError(f"no {MEMORY}/block_size_bytes in the guest's read")
    return MemoryLayout(block_size=int(size, 16), blocks=blocks)


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


def parse_block_writes(text: str) -> dict[int, int]:
    """Lines `@N`, what writing memoryN/state printed (stdout and stderr), `=STATUS`, per
    block: block index -> 0 on success, else the errno of its refusal."""
    out = {}
    for m in re.finditer(r"^@(\d+)\n(.*?)^=(\d+)$", text, re.M | re.S):
        out[int(m[1])] = 0 if m[3] == "0" else write_errno(m[2])
    return out
