"""Everything else a hotplug step changes: zones, MemTotal, node states, /proc/iomem, the
firmware memmap and the memmap page count, read in one round trip before and after a step
(with the memory-block layout, so a step costs two reads) and compared with what the kernel
must show.

The arithmetic (mm/memory_hotplug.c, the same in 6.1 and 6.12 unless noted):
* add (add_memory_resource): no zone or MemTotal change (zones are associated only at online,
  move_pfn_range_to_zone); a "System RAM" resource for the device (register_memory_resource);
  on x86 a /sys/firmware/memmap entry (firmware_map_add_hotplug); since v6.11 vmstat
  nr_memmap_pages grows by each section's memmap ("mm: report per-page metadata
  information").
* online of B pages into zone Z (online_pages, memory_block_online): Z.present += B
  (adjust_present_page_count; a self-hosted memmap's V pages included), Z.managed and
  MemTotal += B - V (only pages handed to the buddy count), and Z spans its blocks
  (resize_zone_range).
* offline: the reverse, the span shrinking at the zone's edges (shrink_zone_span).
* remove (try_remove_memory): the resource, the firmware memmap entry and the memmap pages
  go away again.
* page_ext (mm/page_ext.c, where a boot option or debug config needs it): each section's
  table is allocated at online (MEM_GOING_ONLINE -> init_section_page_ext) and freed at
  offline, and alloc_page_ext counts it in nr_memmap_pages too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.guest.files import Files
from harness.guest.memory import (
    LAYOUT_FILES,
    LAYOUT_LINKS,
    MemoryBlock,
    MemoryLayout,
    parse_meminfo,
    parse_memory,
)
from harness.guest.procfs import Zones, parse_node_list, parse_zoneinfo
from harness.guest.shell import GuestShell

STRUCT_PAGE = 64  # sizeof(struct page) without debug options
_NODE = "/sys/devices/system/node"
_NODE_LISTS = ("online", "has_memory", "has_normal_memory")
_FWMAP = "/sys/firmware/memmap"  # none on pseries
_FILES = (
    "/proc/zoneinfo",
    "/proc/meminfo",
    *(f"{_NODE}/{name}" for name in _NODE_LISTS),
    "/proc/iomem",
    f"{_FWMAP}/*/*",
    "/proc/vmstat",
    *LAYOUT_FILES,
)
_FWMAP_FILE = re.compile(rf"{_FWMAP}/(\d+)/(start|end|type)$")

Range = tuple[int, int, str]  # start, end (inclusive, as the kernel prints it), name


@dataclass(frozen=True)
class HotplugState:
    zones: Zones
    meminfo: dict[str, int]
    nodes: dict[str, frozenset[int]]
    iomem: tuple[Range, ...]  # top-level and nested, in file order
    firmware_memmap: frozenset[Range]
    memmap_pages: int | None  # vmstat nr_memmap_pages (v6.11+), None before
    layout: MemoryLayout  # the memory blocks, read in the same command

    @classmethod
    def read(cls, guest: GuestShell) -> HotplugState:
        return cls.parse(guest.read_files(_FILES, LAYOUT_LINKS))

    @classmethod
    def parse(cls, files: Files) -> HotplugState:
        resources = tuple(
            (int(m[1], 16), int(m[2], 16), m[3].strip())
            for m in re.finditer(
                r"^\s*([0-9a-f]+)-([0-9a-f]+) : (.*)$", files.get("/proc/iomem", ""), re.M
            )
        )
        entries: dict[str, dict[str, str]] = {}
        for path, text in files.items():
            if m := _FWMAP_FILE.match(path):
                entries.setdefault(m[1], {})[m[2]] = text.strip()
        fw = frozenset(
            (int(e["start"], 16), int(e["end"], 16), e["type"])
            for e in entries.values()
            if e.keys() == {"start", "end", "type"}
        )
        count = re.search(r"^nr_memmap_pages (\d+)$", files.get("/proc/vmstat", ""), re.M)
        return cls(
            parse_zoneinfo(files.get("/proc/zoneinfo", "")),
            parse_meminfo(files.get("/proc/meminfo", "")),
            # an empty list (no node has normal memory) is an empty file: grep prints nothing
            {k: parse_node_list(files.get(f"{_NODE}/{k}", "")) for k in _NODE_LISTS},
            resources,
            fw,
            int(count[1]) if count else None,
            parse_memory(files),
        )

    def zone(self, node: int, name: str) -> tuple[int, int, int]:
        z = self.zones.get((node, name))
        return (z.present, z.managed, z.spanned) if z else (0, 0, 0)


@dataclass(frozen=True)
class Finding:
    where: str  # file and field
    expected: str
    seen: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: expected {self.expected}, seen {self.seen}\n    why: {self.why}"


def report(step: str, findings: Sequence[Finding]) -> str | None:
    if not findings:
        return None
    return f"{step}: {len(findings)} effect(s) not as the kernel must show them\n  " + "\n  ".join(
        str(f) for f in findings
    )


# -- add and remove -----------------------------------------------------------------------


def added(
    before: HotplugState,
    after: HotplugState,
    addr: int,
    size: int,
    memmap_pages: int,
    *,
    zones: bool = True,
    unit: int | None = None,
    page_ext: int = 0,
) -> list[Finding]:
    """A device's memory was added, in one add (ACPI: the whole DIMM) or one per ``unit``
    bytes (pseries DLPAR: per LMB); ``zones``: its blocks stayed offline, so no zone moved;
    ``page_ext``: pages of the page_ext tables of the sections that went online too."""
    out = (
        _zones_unchanged(
            before, after, "an add associates no zone (move_pfn_range_to_zone runs at online)"
        )
        if zones
        else []
    )
    step = unit or size
    wanted = [(a, a + step - 1, "System RAM") for a in range(addr, addr + size, step)]
    if any(r not in after.iomem or r in before.iomem for r in wanted):
        how = f"one per {step >> 20} MiB add" if unit else "one for the device"
        out.append(
            Finding(
                "/proc/iomem",
                f"new 'System RAM' resources, {how}: "
                + "; ".join(f"{s:x}-{e:x}" for s, e, _ in wanted),
                _ranges_at(after.iomem, addr, size),
                "add_memory_resource -> register_memory_resource",
            )
        )
    ram = (addr, addr + size - 1, "System RAM")
    if before.firmware_memmap and ram not in after.firmware_memmap - before.firmware_memmap:
        out.append(
            Finding(
                "/sys/firmware/memmap",
                f"an entry {ram[0]:#x} {ram[1]:#x} System RAM",
                "none" if ram not in after.firmware_memmap else "there before",
                "add_memory_resource -> firmware_map_add_hotplug (x86)",
            )
        )
    out += _memmap_count(before, after, memmap_pages, page_ext, "populate_section_memmap")
    return out


def removed(
    before: HotplugState,
    after: HotplugState,
    addr: int,
    size: int,
    memmap_pages: int,
    *,
    zones: bool = True,
    page_ext: int = 0,
) -> list[Finding]:
    """A device's memory was removed; ``zones``: it was offline already, so no zone moved;
    ``page_ext``: pages of the page_ext tables of its sections that were online."""
    out = (
        _zones_unchanged(before, after, "its blocks were offline: removal touches no zone")
        if zones
        else []
    )
    ram = (addr, addr + size - 1, "System RAM")
    if any(s <= ram[1] and e >= addr and n == "System RAM" for s, e, n in after.iomem):
        out.append(
            Finding(
                "/proc/iomem",
                "no 'System RAM' left in the removed range",
                _ranges_at(after.iomem, addr, size),
                "try_remove_memory -> release_mem_region_adjustable",
            )
        )
    if ram in after.firmware_memmap:
        out.append(
            Finding(
                "/sys/firmware/memmap",
                "its entry gone",
                "still there",
                "try_remove_memory -> firmware_map_remove",
            )
        )
    out += _memmap_count(before, after, -memmap_pages, -page_ext, "depopulate_section_memmap")
    return out


def memmap_pages_of(size: int, section_size: int, page_size: int) -> int:
    """nr_memmap_pages of ``size`` bytes: each section's memmap, rounded up to pages."""
    sections = size // section_size
    return sections * -(-(section_size // page_size) * STRUCT_PAGE // page_size)


def page_ext_table_pages(dmesg: str, boot_sections: int, page_size: int) -> int:
    """Pages of one section's page_ext table, from page_ext_init's "allocated N bytes of
    page_ext" (N: the tables of the ``boot_sections`` sections present at boot); 0 when the
    kernel prints none (no page_ext user asked for it: invoke_need_callbacks)."""
    found = re.search(r"allocated (\d+) bytes of page_ext", dmesg)
    if found is None:
        return 0
    total = int(found.group(1))
    if boot_sections <= 0 or total % boot_sections:
        raise ValueError(f"{total} bytes of page_ext do not split over {boot_sections} sections")
    return -(-(total // boot_sections) // page_size)


# -- online and offline -------------------------------------------------------------------


def onlined(
    before: HotplugState,
    after: HotplugState,
    layout: MemoryLayout,
    blocks: Iterable[MemoryBlock],
    page_size: int,
    vmemmap: int,
) -> list[Finding]:
    """``blocks`` (as they are now) went online; ``vmemmap`` pages of each host its memmap."""
    return _counted(before, after, layout, list(blocks), page_size, vmemmap, sign=1)


def offlined(
    before: HotplugState,
    after: HotplugState,
    layout: MemoryLayout,
    blocks_before: Iterable[MemoryBlock],
    page_size: int,
    vmemmap: int,
) -> list[Finding]:
    """``blocks_before`` (as they were, online) went offline."""
    return _counted(before, after, layout, list(blocks_before), page_size, vmemmap, sign=-1)


def _counted(
    before: HotplugState,
    after: HotplugState,
    layout: MemoryLayout,
    blocks: list[MemoryBlock],
    page_size: int,
    vmemmap: int,
    sign: int,
) -> list[Finding]:
    pages = layout.block_size // page_size
    out = []
    by_zone: dict[tuple[int, str], int] = {}
    for b in blocks:
        if b.zone is not None and b.node is not None:
            by_zone[(b.node, b.zone)] = by_zone.get((b.node, b.zone), 0) + 1
    verb = "online_pages" if sign > 0 else "offline_pages"
    for (node, zone), n in sorted(by_zone.items()):
        (p0, m0, _), (p1, m1, _) = before.zone(node, zone), after.zone(node, zone)
        where = f"/proc/zoneinfo Node {node} {zone}"
        want_p, want_m = p0 + sign * n * pages, m0 + sign * n * (pages - vmemmap)
        if p1 != want_p:
            out.append(
                Finding(
                    f"{where} present",
                    f"{want_p} ({sign * n:+d} x {pages})",
                    str(p1),
                    f"{verb} -> adjust_present_page_count",
                )
            )
        if m1 != want_m:
            out.append(
                Finding(
                    f"{where} managed",
                    f"{want_m} ({sign * n:+d} x ({pages} - {vmemmap} memmap))",
                    str(m1),
                    f"{verb}: pages handed to (taken from) the buddy",
                )
            )
        out += _span(after, layout, node, zone, pages)
    delta = sign * sum(by_zone.values()) * (pages - vmemmap) * page_size
    t0, t1 = before.meminfo.get("MemTotal", 0), after.meminfo.get("MemTotal", 0)
    if t1 - t0 != delta:
        out.append(
            Finding(
                "/proc/meminfo MemTotal",
                f"{delta >> 10:+d} kB",
                f"{(t1 - t0) >> 10:+d} kB",
                "totalram_pages follows the managed pages",
            )
        )
    return out


def _span(
    state: HotplugState, layout: MemoryLayout, node: int, zone: str, pages: int
) -> list[Finding]:
    """A zone made of memory blocks only (present = its blocks) spans exactly them."""
    mine = sorted(
        b.phys_index * pages
        for b in layout.blocks.values()
        if b.online and b.node == node and b.zone == zone
    )
    z = state.zones.get((node, zone))
    if z is None or z.present != len(mine) * pages:
        return []  # boot memory with holes in it: its span is not the blocks'
    where = f"/proc/zoneinfo Node {node} {zone}"
    if not mine:
        if z.spanned or z.start_pfn is not None:
            return [
                Finding(
                    f"{where} spanned",
                    "0, no start_pfn (empty)",
                    f"{z.spanned} from {z.start_pfn}",
                    "shrink_zone_span",
                )
            ]
        return []
    start, end = mine[0], mine[-1] + pages
    if (z.start_pfn, z.spanned) != (start, end - start):
        return [
            Finding(
                f"{where} start_pfn, spanned",
                f"{start:#x}, {end - start}",
                f"{z.start_pfn:#x}, {z.spanned}"
                if z.start_pfn is not None
                else f"none, {z.spanned}",
                "resize_zone_range at online, shrink_zone_span at offline: the zone "
                "spans its first to its last online block",
            )
        ]
    return []


# -- helpers ------------------------------------------------------------------------------


def _zones_unchanged(before: HotplugState, after: HotplugState, why: str) -> list[Finding]:
    out = []
    for key in sorted(before.zones.keys() | after.zones.keys()):
        b, a = before.zone(*key), after.zone(*key)
        if b != a:
            out.append(
                Finding(
                    f"/proc/zoneinfo Node {key[0]} {key[1]} present/managed/spanned",
                    "unchanged " + "/".join(map(str, b)),
                    "/".join(map(str, a)),
                    why,
                )
            )
    t0, t1 = before.meminfo.get("MemTotal"), after.meminfo.get("MemTotal")
    if t0 != t1:
        out.append(Finding("/proc/meminfo MemTotal", f"unchanged {t0}", str(t1), why))
    return out


def _memmap_count(
    before: HotplugState, after: HotplugState, memmap: int, page_ext: int, why: str
) -> list[Finding]:
    if before.memmap_pages is None or after.memmap_pages is None:
        return []
    seen = after.memmap_pages - before.memmap_pages
    if seen == memmap + page_ext:
        return []
    want = f"{memmap + page_ext:+d}" + (
        f" ({memmap:+d} memmap, {page_ext:+d} page_ext)" if page_ext else ""
    )
    if page_ext:
        why += ", and the page_ext tables (init_section_page_ext / __free_page_ext)"
    return [
        Finding(
            "/proc/vmstat nr_memmap_pages", want, f"{seen:+d}", f"{why} (memmap_pages_add, v6.11)"
        )
    ]


def _ranges_at(resources: tuple[Range, ...], addr: int, size: int) -> str:
    near = [f"{s:x}-{e:x} : {n}" for s, e, n in resources if s < addr + size and e >= addr]
    return "; ".join(near) or "nothing there"
