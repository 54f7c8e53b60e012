"""The arithmetic of harness.hotplug.effects, table-driven: each effect a step must show, and
each one missing or wrong, found and named with the kernel function behind it."""

from __future__ import annotations

import dataclasses

import pytest

from harness.guest.memory import MemoryBlock, MemoryLayout
from harness.guest.procfs import Zone
from harness.hotplug import effects
from harness.hotplug.effects import HotplugState

MiB = 1 << 20
PAGE = 4096
BLOCK = 128 * MiB
PAGES = BLOCK // PAGE  # 32768
DIMM = 0x100000000  # 4 GiB, blocks 32 and 33
SIZE = 2 * BLOCK


def zone(node: int, name: str, start: int | None, spanned: int, present: int, managed: int) -> Zone:
    return Zone(node, name, spanned, present, managed, free=0, start_pfn=start)


def block(
    index: int, state: str = "offline", zone_: str | None = None, node: int = 0
) -> MemoryBlock:
    zones = (zone_,) if state == "online" and zone_ else ("Normal", "Movable")
    return MemoryBlock(index, state, index, zones, node)


BOOT_ZONES = {
    (0, "DMA"): zone(0, "DMA", 1, 4095, 3998, 3840),
    (0, "DMA32"): zone(0, "DMA32", 4096, 258048, 258048, 250000),
}


def boot(**over: object) -> HotplugState:
    """A booted x86-64 guest with 1 GiB on node 0 and nothing plugged."""
    managed = sum(z.managed for z in BOOT_ZONES.values()) * PAGE
    state = HotplugState(
        zones=dict(BOOT_ZONES),
        meminfo={"MemTotal": managed, "DirectMap4k": 40 * MiB, "DirectMap2M": 984 * MiB},
        nodes={
            "online": frozenset({0}),
            "has_memory": frozenset({0}),
            "has_normal_memory": frozenset({0}),
        },
        iomem=((0x100000, 0x3FFFFFFF, "System RAM"),),
        firmware_memmap=frozenset({(0x100000, 0x3FFFFFFF, "System RAM")}),
        memmap_pages=0,
        layout=MemoryLayout(BLOCK, {i: block(i, "online", "DMA32") for i in range(8)}),
        node_mem_total={0: managed},
        node_cpus={0: frozenset({0, 1})},
        tiered=frozenset({0}),
        kthreads=frozenset({("kswapd", 0), ("kcompactd", 0)}),
    )
    return dataclasses.replace(state, **over)  # type: ignore[arg-type]


def plugged(state: HotplugState, node: int = 0, online: str | None = None) -> HotplugState:
    """``state`` with the 256 MiB DIMM added (x86: one resource, a firmware entry, its memmap
    counted, the direct map grown), its blocks offline, or online in zone ``online``."""
    blocks = dict(state.layout.blocks)
    for i in (32, 33):
        blocks[i] = block(i, "online" if online else "offline", online, node)
    ram = (DIMM, DIMM + SIZE - 1, "System RAM")
    return dataclasses.replace(
        state,
        iomem=(*state.iomem, ram),
        firmware_memmap=state.firmware_memmap | {ram},
        memmap_pages=(state.memmap_pages or 0) + 1024,
        meminfo={**state.meminfo, "DirectMap2M": state.meminfo["DirectMap2M"] + SIZE},
        layout=MemoryLayout(BLOCK, blocks),
        nodes={**state.nodes, "online": state.nodes["online"] | {node}},
        node_mem_total={node: 0, **state.node_mem_total},
    )


def onlined_movable(state: HotplugState, node: int = 0, vmemmap: int = 0) -> HotplugState:
    """``state`` with the DIMM's two blocks onlined to node's Movable zone."""
    blocks = dict(state.layout.blocks)
    for i in (32, 33):
        blocks[i] = block(i, "online", "Movable", node)
    pages = 2 * PAGES
    managed = 2 * (PAGES - vmemmap)
    zones = {
        **state.zones,
        (node, "Movable"): zone(node, "Movable", DIMM // PAGE, pages, pages, managed),
    }
    return dataclasses.replace(
        state,
        zones=zones,
        layout=MemoryLayout(BLOCK, blocks),
        meminfo={**state.meminfo, "MemTotal": state.meminfo["MemTotal"] + managed * PAGE},
        node_mem_total={
            **state.node_mem_total,
            node: state.node_mem_total.get(node, 0) + managed * PAGE,
        },
        nodes={**state.nodes, "has_memory": state.nodes["has_memory"] | {node}},
        kthreads=state.kthreads | {("kswapd", node), ("kcompactd", node)},
        tiered=(state.tiered or frozenset()) | {node},
    )


def where(findings: list[effects.Finding]) -> list[str]:
    return [f.where for f in findings]


# -- add and remove -------------------------------------------------------------------------


def test_a_correct_add_has_no_findings() -> None:
    before = boot()
    assert effects.added(before, plugged(before), DIMM, SIZE, 1024, node=0) == []


@pytest.mark.parametrize(
    ("broken", "found"),
    [
        (lambda s: dataclasses.replace(s, iomem=s.iomem[:-1]), "/proc/iomem"),
        (
            lambda s: dataclasses.replace(
                s, firmware_memmap=s.firmware_memmap - {(DIMM, DIMM + SIZE - 1, "System RAM")}
            ),
            "/sys/firmware/memmap",
        ),
        (
            lambda s: dataclasses.replace(s, memmap_pages=s.memmap_pages - 512),
            "/proc/vmstat nr_memmap_pages",
        ),
        (
            lambda s: dataclasses.replace(
                s, meminfo={**s.meminfo, "DirectMap2M": s.meminfo["DirectMap2M"] - SIZE}
            ),
            "/proc/meminfo DirectMap4k+2M+1G",
        ),
        (
            lambda s: dataclasses.replace(
                s, layout=MemoryLayout(BLOCK, {i: b for i, b in s.layout.blocks.items() if i != 33})
            ),
            "/sys/devices/system/memory",
        ),
        (
            lambda s: dataclasses.replace(
                s, layout=MemoryLayout(BLOCK, {**s.layout.blocks, 33: block(33, node=1)})
            ),
            "/sys/devices/system/memory/memoryN/nodeK",
        ),
    ],
    ids=[
        "no-resource",
        "no-firmware-entry",
        "memmap-short",
        "direct-map-unmapped",
        "no-block",
        "block-astray",
    ],
)
def test_an_add_missing_an_effect_names_it(broken: object, found: str) -> None:
    before = boot()
    after = broken(plugged(before))  # type: ignore[operator]
    assert found in where(effects.added(before, after, DIMM, SIZE, 1024, node=0))


def test_an_add_to_a_node_left_offline_is_found() -> None:
    before = boot()
    after = plugged(before, node=2)
    after = dataclasses.replace(after, nodes={**after.nodes, "online": frozenset({0})})
    found = effects.added(before, after, DIMM, SIZE, 1024, node=2)
    assert where(found) == ["/sys/devices/system/node/online, node2/"]
    assert "__try_online_node" in found[0].why


def test_a_correct_removal_has_no_findings() -> None:
    before = plugged(boot())
    assert effects.removed(before, boot(), DIMM, SIZE, 1024, node=0) == []


@pytest.mark.parametrize(
    ("left", "found"),
    [
        (
            lambda s: dataclasses.replace(
                s, iomem=(*s.iomem, (DIMM, DIMM + SIZE - 1, "System RAM"))
            ),
            "/proc/iomem",
        ),
        (lambda s: dataclasses.replace(s, memmap_pages=512), "/proc/vmstat nr_memmap_pages"),
        (
            lambda s: dataclasses.replace(
                s, meminfo={**s.meminfo, "DirectMap2M": s.meminfo["DirectMap2M"] + BLOCK}
            ),
            "/proc/meminfo DirectMap4k+2M+1G",
        ),
        (
            lambda s: dataclasses.replace(
                s, layout=MemoryLayout(BLOCK, {**s.layout.blocks, 33: block(33)})
            ),
            "/sys/devices/system/memory",
        ),
    ],
    ids=["resource-kept", "one-block-memmap-kept", "direct-map-kept", "block-kept"],
)
def test_a_removal_that_leaves_something_names_it(left: object, found: str) -> None:
    """Even one block's memmap (512 pages) kept after removal is found."""
    before = plugged(boot())
    after = left(boot())  # type: ignore[operator]
    assert found in where(effects.removed(before, after, DIMM, SIZE, 1024, node=0))


def test_the_node_of_a_removed_dimm_goes_offline_only_when_nothing_is_left_on_it() -> None:
    before = plugged(boot(), node=2)
    gone = boot()  # node 2: no memory, no block, no CPU: offline, its directory removed
    assert effects.removed(before, gone, DIMM, SIZE, 1024, node=2) == []
    stuck = dataclasses.replace(gone, nodes={**gone.nodes, "online": frozenset({0, 2})})
    found = effects.removed(before, stuck, DIMM, SIZE, 1024, node=2)
    assert where(found) == ["/sys/devices/system/node/online, node2/"]
    assert "try_offline_node" in found[0].why
    with_cpu = dataclasses.replace(gone, node_cpus={**gone.node_cpus, 2: frozenset({1})})
    assert effects.removed(before, with_cpu, DIMM, SIZE, 1024, node=2) != []  # must stay


# -- online and offline ---------------------------------------------------------------------


@pytest.mark.parametrize("vmemmap", [0, 512])
def test_online_counts_present_managed_memtotal_and_span(vmemmap: int) -> None:
    before = plugged(boot())
    after = onlined_movable(before, vmemmap=vmemmap)
    blocks = [after.layout.blocks[i] for i in (32, 33)]
    assert effects.onlined(before, after, after.layout, blocks, PAGE, vmemmap) == []


@pytest.mark.parametrize(
    ("field", "found"),
    [
        ("present", "/proc/zoneinfo Node 0 Movable present"),
        ("managed", "/proc/zoneinfo Node 0 Movable managed"),
        ("spanned", "/proc/zoneinfo Node 0 Movable start_pfn, spanned"),
    ],
)
def test_online_with_a_zone_count_wrong_names_it(field: str, found: str) -> None:
    before = plugged(boot())
    after = onlined_movable(before)
    z = after.zones[(0, "Movable")]
    after = dataclasses.replace(
        after,
        zones={
            **after.zones,
            (0, "Movable"): dataclasses.replace(z, **{field: getattr(z, field) - 1}),
        },
    )
    blocks = [after.layout.blocks[i] for i in (32, 33)]
    assert found in where(effects.onlined(before, after, after.layout, blocks, PAGE, 0))


def test_online_that_does_not_raise_memtotal_is_found() -> None:
    before = plugged(boot())
    after = onlined_movable(before)
    after = dataclasses.replace(
        after, meminfo={**after.meminfo, "MemTotal": before.meminfo["MemTotal"]}
    )
    blocks = [after.layout.blocks[i] for i in (32, 33)]
    assert where(effects.onlined(before, after, after.layout, blocks, PAGE, 0)) == [
        "/proc/meminfo MemTotal"
    ]


def test_offline_is_the_inverse_of_online_and_empties_the_span() -> None:
    offline = plugged(boot())
    online = onlined_movable(offline)
    after = dataclasses.replace(
        offline, zones={**offline.zones, (0, "Movable"): zone(0, "Movable", None, 0, 0, 0)}
    )
    was = [online.layout.blocks[i] for i in (32, 33)]
    assert effects.offlined(online, after, after.layout, was, PAGE, 0) == []
    kept = dataclasses.replace(
        after, zones={**after.zones, (0, "Movable"): zone(0, "Movable", DIMM // PAGE, PAGES, 0, 0)}
    )
    assert "/proc/zoneinfo Node 0 Movable spanned" in where(
        effects.offlined(online, kept, kept.layout, was, PAGE, 0)
    )


# -- what holds after every step ------------------------------------------------------------


def test_a_consistent_guest_has_no_node_findings() -> None:
    assert effects.node_invariants(boot(), PAGE) == []
    assert effects.node_invariants(onlined_movable(plugged(boot(), node=2), node=2), PAGE) == []


@pytest.mark.parametrize(
    ("broken", "found"),
    [
        (
            lambda s: dataclasses.replace(s, kthreads=s.kthreads - {("kswapd", 2)}),
            "node 2: kswapd2",
        ),
        (
            lambda s: dataclasses.replace(s, kthreads=s.kthreads - {("kcompactd", 2)}),
            "node 2: kcompactd2",
        ),
        (lambda s: dataclasses.replace(s, tiered=frozenset({0})), "node 2: a memory tier"),
        (
            lambda s: dataclasses.replace(s, nodes={**s.nodes, "has_memory": frozenset({0})}),
            "node 2: has_memory",
        ),
        (
            lambda s: dataclasses.replace(
                s, nodes={**s.nodes, "has_normal_memory": frozenset({0, 2})}
            ),
            "node 2: has_normal_memory",
        ),
        (
            lambda s: dataclasses.replace(s, node_mem_total={**s.node_mem_total, 2: 0}),
            "/sys/devices/system/node/node2/meminfo MemTotal",
        ),
        (
            lambda s: dataclasses.replace(s, node_mem_total={0: s.node_mem_total[0]}),
            "node 2: node2/ directory",
        ),
    ],
    ids=[
        "no-kswapd",
        "no-kcompactd",
        "no-tier",
        "no-n-memory",
        "n-normal-for-movable",
        "memtotal",
        "no-dir",
    ],
)
def test_a_node_state_out_of_step_with_its_memory_is_found(broken: object, found: str) -> None:
    state = broken(onlined_movable(plugged(boot(), node=2), node=2))  # type: ignore[operator]
    assert found in where(effects.node_invariants(state, PAGE))


def test_a_kswapd_left_running_after_the_last_memory_went_is_found() -> None:
    state = dataclasses.replace(boot(), kthreads=boot().kthreads | {("kswapd", 2)})
    assert where(effects.node_invariants(state, PAGE)) == ["node 2: kswapd2"]


def test_kernels_without_compaction_or_tiers_are_not_held_to_them() -> None:
    state = onlined_movable(plugged(boot(), node=2), node=2)
    bare = dataclasses.replace(
        state, tiered=None, kthreads=frozenset(k for k in state.kthreads if k[0] == "kswapd")
    )
    assert effects.node_invariants(bare, PAGE) == []


# -- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "section", "page", "struct_page", "pages"),
    [
        (SIZE, 128 * MiB, 4096, 64, 1024),  # x86-64: 512 pages of memmap per section
        (256 * MiB, 16 * MiB, 65536, 64, 16),  # ppc64le 64 KiB pages: one page per section
        (256 * MiB, 16 * MiB, 4096, 64, 1024),  # ppc64le 4 KiB pages
        (128 * MiB, 128 * MiB, 4096, 56, 448),  # MEMCG=n: a 56-byte struct page
    ],
)
def test_memmap_pages_of(size: int, section: int, page: int, struct_page: int, pages: int) -> None:
    assert effects.memmap_pages_of(size, section, page, struct_page) == pages
