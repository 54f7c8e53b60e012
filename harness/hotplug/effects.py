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
* the direct map (x86, DirectMap* in /proc/meminfo): arch_add_memory -> init_memory_mapping
  maps the range (update_page_count), arch_remove_memory -> remove_pagetable unmaps it.
* the node: add_memory_resource onlines it and registers it in sysfs (__try_online_node,
  __register_one_node) and links each new block under it (register_memory_blocks_under_node);
  try_remove_memory -> try_offline_node takes it down again once it spans no pages, holds no
  block and has no CPU (unregister_one_node).

And what must hold after every step (``node_invariants``): a node has N_MEMORY exactly while
its zones have present pages, N_NORMAL_MEMORY while its kernel zones do (node_states_set_node
at online, node_states_clear_node at offline); kswapdN and kcompactdN run exactly for the
N_MEMORY nodes (online_pages -> kswapd_run / kcompactd_run, offline_pages -> kswapd_stop /
kcompactd_stop); a node is in a memory tier exactly while it has N_MEMORY (mm/memory-tiers.c,
memtier_hotplug_callback); a node's MemTotal is its zones' managed pages (si_meminfo_node).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.guest.files import Files
from harness.guest.memory import (
    LAYOUT_FILES,
    MemoryBlock,
    MemoryLayout,
    parse_meminfo,
    parse_memory,
)
from harness.guest.procfs import Zones, parse_node_list, parse_zoneinfo

_NODE = "/sys/devices/system/node"
_NODE_LISTS = ("online", "has_memory", "has_normal_memory")
_FWMAP = "/sys/firmware/memmap"  # none on pseries
_TIERS = "/sys/devices/virtual/memory_tiering"  # mm/memory-tiers.c (v6.1)
STATE_FILES = (
    "/proc/zoneinfo",
    "/proc/meminfo",
    *(f"{_NODE}/{name}" for name in _NODE_LISTS),
    f"{_NODE}/node[0-9]*/meminfo",
    f"{_NODE}/node[0-9]*/cpulist",
    f"{_TIERS}/memory_tier*/nodelist",
    "/proc/[0-9]*/comm",  # kswapdN, kcompactdN
    "/proc/iomem",
    f"{_FWMAP}/*/*",
    "/proc/vmstat",
    *LAYOUT_FILES,
)
_FWMAP_FILE = re.compile(rf"{_FWMAP}/(\d+)/(start|end|type)$")
_NODE_FILE = re.compile(rf"{_NODE}/node(\d+)/(meminfo|cpulist)$")
_TIER_FILE = re.compile(rf"{_TIERS}/memory_tier\d+/nodelist$")
_KTHREAD = re.compile(r"^(kswapd|kcompactd)(\d+)$")
KERNEL_ZONES = ("DMA", "DMA32", "Normal")  # zone_idx <= ZONE_NORMAL: N_NORMAL_MEMORY
DIRECT_MAP = ("DirectMap4k", "DirectMap2M", "DirectMap4M", "DirectMap1G")

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
    node_mem_total: dict[int, int]  # node (its sysfs directory exists) -> its MemTotal, bytes
    node_cpus: dict[int, frozenset[int]]  # node -> its CPUs
    tiered: frozenset[int] | None  # nodes in some memory tier; None: no memory tiers
    kthreads: frozenset[tuple[str, int]]  # ("kswapd", node), ("kcompactd", node) running

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
        node_mem, node_cpus = _nodes(files)
        tiers = [parse_node_list(t) for p, t in files.items() if _TIER_FILE.match(p)]
        threads = frozenset(
            (m[1], int(m[2]))
            for p, t in files.items()
            if p.startswith("/proc/") and (m := _KTHREAD.match(t.strip()))
        )
        return cls(
            parse_zoneinfo(files.get("/proc/zoneinfo", "")),
            parse_meminfo(files.get("/proc/meminfo", "")),
            # an empty list (no node has normal memory) is an empty file: grep prints nothing
            {k: parse_node_list(files.get(f"{_NODE}/{k}", "")) for k in _NODE_LISTS},
            resources,
            fw,
            int(count[1]) if count else None,
            parse_memory(files),
            node_mem,
            node_cpus,
            frozenset().union(*tiers) if tiers else None,
            threads,
        )

    def zone(self, node: int, name: str) -> tuple[int, int, int]:
        z = self.zones.get((node, name))
        return (z.present, z.managed, z.spanned) if z else (0, 0, 0)

    def direct_map(self) -> int | None:
        """Bytes the kernel's direct map covers (x86 DirectMap*); None where not shown."""
        sizes = [self.meminfo[k] for k in DIRECT_MAP if k in self.meminfo]
        return sum(sizes) if sizes else None

    def node_present(self, node: int, zones: Iterable[str] | None = None) -> int:
        return sum(
            z.present
            for (n, name), z in self.zones.items()
            if n == node and (zones is None or name in zones)
        )


def _nodes(files: Files) -> tuple[dict[int, int], dict[int, frozenset[int]]]:
    """Each node directory's MemTotal and CPUs."""
    mem: dict[int, int] = {}
    cpus: dict[int, frozenset[int]] = {}
    for path, text in files.items():
        if m := _NODE_FILE.match(path):
            node = int(m[1])
            if m[2] == "cpulist":
                cpus[node] = parse_node_list(text)
            elif total := re.search(r"MemTotal:\s+(\d+) kB", text):
                mem[node] = int(total[1]) << 10
    return mem, cpus


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
    node: int | None = None,
    resource: str = "System RAM",
) -> list[Finding]:
    """A device's memory was added, in one add (ACPI: the whole DIMM) or one per ``unit``
    bytes (pseries DLPAR: per LMB); ``zones``: its blocks stayed offline, so no zone moved;
    ``page_ext``: pages of the page_ext tables of the sections that went online too;
    ``node``: the NUMA node it went to; ``resource``: the name of its /proc/iomem resource
    ("System RAM (kmem)" for driver-managed memory, which gets no firmware memmap entry)."""
    out = (
        _zones_unchanged(
            before, after, "an add associates no zone (move_pfn_range_to_zone runs at online)"
        )
        if zones
        else []
    )
    step = unit or size
    wanted = [(a, a + step - 1, resource) for a in range(addr, addr + size, step)]
    if any(r not in after.iomem or r in before.iomem for r in wanted):
        how = f"one per {step >> 20} MiB add" if unit else "one for the device"
        out.append(
            Finding(
                "/proc/iomem",
                f"new '{resource}' resources, {how}: "
                + "; ".join(f"{s:x}-{e:x}" for s, e, _ in wanted),
                _ranges_at(after.iomem, addr, size),
                "add_memory_resource -> register_memory_resource",
            )
        )
    ram = (addr, addr + size - 1, "System RAM")
    firmware = resource == "System RAM"  # add_memory_driver_managed makes no entry
    if (
        firmware
        and before.firmware_memmap
        and ram not in after.firmware_memmap - before.firmware_memmap
    ):
        out.append(
            Finding(
                "/sys/firmware/memmap",
                f"an entry {ram[0]:#x} {ram[1]:#x} System RAM",
                "none" if ram not in after.firmware_memmap else "there before",
                "add_memory_resource -> firmware_map_add_hotplug (x86)",
            )
        )
    out += _memmap_count(before, after, memmap_pages, page_ext, "populate_section_memmap")
    out += _direct_map(before, after, size, "arch_add_memory -> init_memory_mapping")
    return out + _blocks_added(after, addr, size, node)


def _blocks_added(after: HotplugState, addr: int, size: int, node: int | None) -> list[Finding]:
    """The range's memory blocks exist, linked under their node, which is online."""
    blocks = after.layout.covering(addr, size)
    want = size // after.layout.block_size
    out = []
    if len(blocks) != want:
        out.append(
            Finding(
                "/sys/devices/system/memory",
                f"{want} memory blocks for {addr:#x}-{addr + size - 1:#x}",
                f"{len(blocks)}: {[b.index for b in blocks]}",
                "add_memory_resource -> create_memory_block_devices",
            )
        )
    if node is None:
        return out
    astray = {b.index: b.node for b in blocks if b.node != node}
    if astray:
        out.append(
            Finding(
                "/sys/devices/system/memory/memoryN/nodeK",
                f"every block linked under node{node}",
                ", ".join(f"memory{i} under node{n}" for i, n in astray.items()),
                "add_memory_resource -> register_memory_blocks_under_node",
            )
        )
    if node not in after.nodes["online"] or node not in after.node_mem_total:
        out.append(
            Finding(
                f"/sys/devices/system/node/online, node{node}/",
                f"node {node} online, its directory registered",
                f"online {sorted(after.nodes['online'])}, directories "
                f"{sorted(after.node_mem_total)}",
                "add_memory_resource -> __try_online_node, node_set_online, __register_one_node",
            )
        )
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
    node: int | None = None,
    resource: str = "System RAM",
) -> list[Finding]:
    """A device's memory was removed; ``zones``: it was offline already, so no zone moved;
    ``page_ext``: pages of the page_ext tables of its sections that were online; ``node``:
    the NUMA node its blocks were under; ``resource``: its /proc/iomem resource's name."""
    out = (
        _zones_unchanged(before, after, "its blocks were offline: removal touches no zone")
        if zones
        else []
    )
    ram = (addr, addr + size - 1, "System RAM")
    if any(s <= ram[1] and e >= addr and n == resource for s, e, n in after.iomem):
        out.append(
            Finding(
                "/proc/iomem",
                f"no '{resource}' left in the removed range",
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
    out += _direct_map(before, after, -size, "arch_remove_memory -> remove_pagetable")
    left = after.layout.covering(addr, size)
    if left:
        out.append(
            Finding(
                "/sys/devices/system/memory",
                "no memory block left in the removed range",
                ", ".join(f"memory{b.index}" for b in left),
                "try_remove_memory -> remove_memory_block_devices",
            )
        )
    return out + ([] if node is None else _node_after_removal(after, node))


def _node_after_removal(after: HotplugState, node: int) -> list[Finding]:
    """try_offline_node: the node goes offline (and its sysfs directory away) once it spans
    no pages, no memory block is linked under it and no CPU is on it; else it stays."""
    spans = any(z.spanned for (n, _), z in after.zones.items() if n == node)
    blocks = [b.index for b in after.layout.blocks.values() if b.node == node]
    cpus = after.node_cpus.get(node, frozenset())
    keep = spans or bool(blocks) or bool(cpus)
    online = node in after.nodes["online"]
    registered = node in after.node_mem_total
    if (online, registered) == (keep, keep):
        return []
    why = (
        f"it still spans pages: {spans}, holds blocks: {blocks or 'none'}, "
        f"has CPUs: {sorted(cpus) or 'none'}"
    )
    return [
        Finding(
            f"/sys/devices/system/node/online, node{node}/",
            f"node {node} {'online' if keep else 'offline, its directory gone'} ({why})",
            f"{'online' if online else 'offline'}, directory {'present' if registered else 'gone'}",
            "try_remove_memory -> try_offline_node (node_set_offline, unregister_one_node)",
        )
    ]


def _direct_map(before: HotplugState, after: HotplugState, delta: int, why: str) -> list[Finding]:
    """x86: the direct map grows and shrinks by exactly the device (update_page_count)."""
    was, now = before.direct_map(), after.direct_map()
    if was is None or now is None or now - was == delta:
        return []
    return [
        Finding(
            "/proc/meminfo DirectMap4k+2M+1G",
            f"{delta >> 10:+d} kB",
            f"{(now - was) >> 10:+d} kB",
            f"{why} (update_page_count): the direct map of the range and its page tables",
        )
    ]


# -- what holds after every step -----------------------------------------------------------


def node_invariants(state: HotplugState, page_size: int) -> list[Finding]:
    """What every node's state must agree on, whatever the step (see the module's doc)."""
    nodes = set(state.nodes["online"]) | set(state.node_mem_total) | {n for n, _ in state.zones}
    nodes |= {n for _, n in state.kthreads} | set(state.tiered or ())  # left behind, too
    compaction = any(kind == "kcompactd" for kind, _ in state.kthreads)
    out = []
    for n in sorted(nodes):
        memory = state.node_present(n) > 0
        normal = state.node_present(n, KERNEL_ZONES) > 0
        checks = [
            ("has_memory", n in state.nodes["has_memory"], memory, "node_states_*_node: N_MEMORY"),
            (
                "has_normal_memory",
                n in state.nodes["has_normal_memory"],
                normal,
                "node_states_*_node: N_NORMAL_MEMORY (zones up to Normal)",
            ),
            (
                f"kswapd{n}",
                ("kswapd", n) in state.kthreads,
                memory,
                "online_pages -> kswapd_run, offline_pages -> kswapd_stop",
            ),
            (
                f"node{n}/ directory",
                n in state.node_mem_total,
                n in state.nodes["online"],
                "__register_one_node with node_set_online, unregister_one_node with "
                "node_set_offline",
            ),
        ]
        if compaction:
            checks.append(
                (
                    f"kcompactd{n}",
                    ("kcompactd", n) in state.kthreads,
                    memory,
                    "online_pages -> kcompactd_run, offline_pages -> kcompactd_stop",
                )
            )
        if state.tiered is not None:
            checks.append(
                (
                    "a memory tier",
                    n in state.tiered,
                    memory,
                    "memtier_hotplug_callback: set_node_memory_tier / clear_node_memory_tier",
                )
            )
        for what, seen, want, why in checks:
            if seen != want:
                out.append(
                    Finding(
                        f"node {n}: {what}",
                        f"{'present' if want else 'absent'} (node {n} has "
                        f"{state.node_present(n)} present pages)",
                        "present" if seen else "absent",
                        why,
                    )
                )
        out += _node_mem_total(state, n, page_size)
    return out


def _node_mem_total(state: HotplugState, node: int, page_size: int) -> list[Finding]:
    if node not in state.node_mem_total:
        return []
    managed = sum(z.managed for (n, _), z in state.zones.items() if n == node) * page_size
    seen = state.node_mem_total[node]
    if seen == managed:
        return []
    return [
        Finding(
            f"/sys/devices/system/node/node{node}/meminfo MemTotal",
            f"{managed >> 10} kB (its zones' managed pages)",
            f"{seen >> 10} kB",
            "si_meminfo_node: a node's MemTotal is its zones' managed pages",
        )
    ]


def memmap_pages_of(size: int, section_size: int, page_size: int, struct_page: int) -> int:
    """nr_memmap_pages of ``size`` bytes: each section's memmap (``struct_page`` bytes per
    page), rounded up to pages (section_nr_vmemmap_pages)."""
    sections = size // section_size
    return sections * -(-(section_size // page_size) * struct_page // page_size)


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
