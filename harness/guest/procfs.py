"""/proc/zoneinfo and the node lists of /sys/devices/system/node, parsed."""

from __future__ import annotations

import re
from dataclasses import dataclass

NODES = "/sys/devices/system/node"


@dataclass(frozen=True)
class Zone:
    """One zone of one node, as /proc/zoneinfo shows it (pages)."""

    node: int
    name: str  # DMA, DMA32, Normal, Movable, Device
    spanned: int
    present: int
    managed: int
    free: int
    start_pfn: int | None  # absent for a zone that spans nothing
    cma: int = 0  # pages the CMA areas hold (zoneinfo's "cma", v5.9+ with CONFIG_CMA)

    @property
    def end_pfn(self) -> int | None:
        return None if self.start_pfn is None else self.start_pfn + self.spanned


Zones = dict[tuple[int, str], Zone]


def parse_zoneinfo(text: str) -> Zones:
    """(node, zone name) -> Zone, for every zone /proc/zoneinfo lists."""
    zones: Zones = {}
    for chunk in re.split(r"^(?=Node \d+, zone)", text, flags=re.M):
        head = re.match(r"Node (\d+), zone\s+(\w+)", chunk)
        if not head:
            continue

        def field(name: str, chunk: str = chunk) -> int | None:
            m = re.search(rf"^\s+{name}:?\s+(\d+)\s*$", chunk, re.M)
            return int(m.group(1)) if m else None

        node, name = int(head.group(1)), head.group(2)
        zones[(node, name)] = Zone(
            node=node,
            name=name,
            spanned=field("spanned") or 0,
            present=field("present") or 0,
            managed=field("managed") or 0,
            free=field("pages free") or 0,
            start_pfn=field("start_pfn"),
            cma=field("cma") or 0,
        )
    return zones


def parse_node_list(text: str) -> frozenset[int]:
    """'0-2,4' -> {0, 1, 2, 4} (the format of node/online, has_memory, ...)."""
    out: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return frozenset(out)
