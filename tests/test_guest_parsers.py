"""Unit tests for the text parsers of harness.guest and harness.hotplug (no SSH)."""

from __future__ import annotations

import errno

import pytest

from harness.guest import files
from harness.guest.boot import parse_boot
from harness.guest.memory import (
    MemoryBlock,
    MemoryLayout,
    parse_block_writes,
    parse_meminfo,
    parse_memory,
    write_errno,
)
from harness.guest.procfs import Zone, parse_node_list, parse_zoneinfo
from harness.hotplug import effects

# As files.command prints them: PATH:LINE, and PATH: for a memoryN/nodeK link.
LAYOUT = """\
/sys/devices/system/memory/block_size_bytes:8000000
/sys/devices/system/memory/memory0/state:online
/sys/devices/system/memory/memory1/state:online
/sys/devices/system/memory/memory32/state:offline
/sys/devices/system/memory/memory33/state:online
/sys/devices/system/memory/memory0/phys_index:00000000
/sys/devices/system/memory/memory1/phys_index:00000001
/sys/devices/system/memory/memory32/phys_index:00000020
/sys/devices/system/memory/memory33/phys_index:00000021
/sys/devices/system/memory/memory0/valid_zones:none
/sys/devices/system/memory/memory1/valid_zones:Normal
/sys/devices/system/memory/memory32/valid_zones:Normal Movable
/sys/devices/system/memory/memory33/valid_zones:Movable
/sys/devices/system/memory/memory33/node1:
"""


@pytest.fixture
def layout() -> MemoryLayout:
    return parse_memory(files.parse(LAYOUT))


def test_parse_memory_reads_block_size_and_blocks(layout: MemoryLayout) -> None:
    assert layout.block_size == 128 << 20
    assert sorted(layout.blocks) == [0, 1, 32, 33]
    assert layout.blocks[0] == MemoryBlock(0, "online", 0, ("none",))
    assert layout.blocks[32] == MemoryBlock(32, "offline", 0x20, ("Normal", "Movable"))
    assert layout.blocks[33].node == 1  # from the link's name


def test_block_zone_only_for_online_single_zone(layout: MemoryLayout) -> None:
    b = layout.blocks
    assert (b[0].online, b[0].zone) == (True, None)  # "none": spans zones, cannot offline
    assert (b[1].online, b[1].zone) == (True, "Normal")
    assert (b[32].online, b[32].zone) == (False, None)
    assert (b[33].online, b[33].zone) == (True, "Movable")


def test_parse_memory_missing_phys_index_defaults_to_block_index() -> None:
    layout = parse_memory(
        files.parse(
            "/sys/devices/system/memory/block_size_bytes:8000000\n"
            "/sys/devices/system/memory/memory32/state:offline\n"
        )
    )
    assert layout.blocks[32].phys_index == 32


def test_covering_returns_blocks_inside_range(layout: MemoryLayout) -> None:
    size = layout.block_size
    assert [b.index for b in layout.covering(32 * size, 2 * size)] == [32, 33]
    assert [b.index for b in layout.covering(32 * size, 1)] == [32]
    assert [b.index for b in layout.covering(0, 2 * size)] == [0, 1]
    assert layout.covering(2 * size, 30 * size) == []


def test_pfns_of_block(layout: MemoryLayout) -> None:
    block = layout.blocks[32]
    pages = layout.block_size // 4096
    assert layout.pfns(block, 4096) == range(32 * pages, 33 * pages)
    assert len(layout.pfns(block, 65536)) == layout.block_size // 65536


MEMINFO = """\
MemTotal:        2014420 kB
MemFree:         1820036 kB
HugePages_Total:       0
HugePages_Free:        3
Hugepagesize:       2048 kB
"""


def test_parse_meminfo_converts_kb_to_bytes() -> None:
    info = parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 2014420 * 1024
    assert info["Hugepagesize"] == 2 << 20
    assert info["HugePages_Total"] == 0
    assert info["HugePages_Free"] == 3  # a count, not kB


def test_parse_meminfo_skips_empty_lines() -> None:
    assert parse_meminfo("\nMemFree: 1 kB\n\n") == {"MemFree": 1024}


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("sh: write error: Invalid argument", errno.EINVAL),
        ("sh: write error: Device or resource busy\n", errno.EBUSY),
        (
            "sh: can't create /sys/devices/system/memory/memory99/state: No such file or directory",
            errno.ENOENT,
        ),
        ("sh: write error: Something nobody has heard of", -1),
        ("", -1),
        ("Segmentation fault", -1),
    ],
)
def test_write_errno_maps_busybox_strerror(stderr: str, code: int) -> None:
    assert write_errno(stderr) == code


ZONEINFO = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 3184
  pages free     3808
        boost    0
        spanned  4095
        present  3998
        managed  3840
        protection: (0, 819, 819, 819, 819)
      nr_free_pages 3808
  start_pfn:           1
Node 0, zone   Normal
  pages free     0
        spanned  0
        present  0
        managed  0
Node 1, zone  Movable
  pages free     65000
        spanned  65536
        present  65536
        managed  65536
  start_pfn:           1048576
"""


def test_parse_zoneinfo_reads_each_zone_of_each_node() -> None:
    zones = parse_zoneinfo(ZONEINFO)
    assert zones[(0, "DMA")] == Zone(0, "DMA", 4095, 3998, 3840, 3808, 1)
    assert zones[(0, "Normal")].start_pfn is None and zones[(0, "Normal")].present == 0
    assert zones[(1, "Movable")].end_pfn == 1048576 + 65536


@pytest.mark.parametrize(
    ("text", "nodes"), [("0-2\n", {0, 1, 2}), ("0,2-3", {0, 2, 3}), ("\n", set()), ("1", {1})]
)
def test_parse_node_list(text: str, nodes: set[int]) -> None:
    assert parse_node_list(text) == nodes


# 6.12 debug build, 4 x 128 MiB boot sections, 8 bytes of page_ext per page (mm/page_ext.c)
PAGE_EXT_DMESG = "[    0.091234] allocated 1048576 bytes of page_ext\n"


def test_page_ext_table_pages_splits_the_boot_total_per_section() -> None:
    assert effects.page_ext_table_pages(PAGE_EXT_DMESG, 4, 4096) == 64


def test_page_ext_table_pages_is_zero_when_no_page_ext_user_asked() -> None:
    assert (
        effects.page_ext_table_pages("[    0.0] Memory: 400000K/524288K available\n", 4, 4096) == 0
    )


def test_page_ext_table_pages_refuses_a_total_it_cannot_split() -> None:
    with pytest.raises(ValueError, match="do not split over 3 sections"):
        effects.page_ext_table_pages(PAGE_EXT_DMESG, 3, 4096)


STATE = (
    """\
/sys/devices/system/node/online:0-1
/sys/devices/system/node/has_memory:0
/proc/iomem:00100000-3fffffff : System RAM
/proc/iomem:  01000000-01ffffff : Kernel code
/sys/firmware/memmap/0/end:0x9fbff
/sys/firmware/memmap/0/start:0x0
/sys/firmware/memmap/0/type:System RAM
/sys/firmware/memmap/7/start:0x100000000
/sys/firmware/memmap/7/end:0x10fffffff
/sys/firmware/memmap/7/type:System RAM
/proc/vmstat:nr_page_table_pages 103
/proc/vmstat:nr_memmap_pages 8192
/proc/vmstat:nr_memmap_boot_pages 4096
"""
    + LAYOUT
)  # zoneinfo and meminfo are tested above


def test_state_reads_one_grep_of_all_its_files() -> None:
    state = effects.HotplugState.parse(files.parse(STATE))
    assert state.nodes == {
        "online": {0, 1},
        "has_memory": {0},
        "has_normal_memory": frozenset(),  # empty file: grep prints no line
    }
    assert state.firmware_memmap == {
        (0x0, 0x9FBFF, "System RAM"),
        (0x100000000, 0x10FFFFFFF, "System RAM"),
    }
    assert state.iomem == (
        (0x100000, 0x3FFFFFFF, "System RAM"),
        (0x1000000, 0x1FFFFFF, "Kernel code"),  # nested, in file order
    )
    assert state.memmap_pages == 8192
    assert state.layout.blocks[33] == MemoryBlock(33, "online", 0x21, ("Movable",), node=1)


def test_block_writes_give_each_block_its_errno() -> None:
    out = "@32\n=0\n@33\nsh: write error: Device or resource busy\n=1\n@34\n=0\n"
    assert parse_block_writes(out) == {32: 0, 33: errno.EBUSY, 34: 0}


def test_boot_read_parses_sizes_and_the_page_ext_line() -> None:
    sep = "\n@@memhp@@\n"
    text = sep.join(
        [
            "6.12.57+deb13-amd64",
            "#1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1",
            "console=ttyS0 memhp_default_state=offline",
            "KernelPageSize:        4 kB",
            "Page block order: 9",
            "8000000",
            "16",
            "[    0.091234] allocated 1048576 bytes of page_ext",
            "force",
            "SIZE(page)=64\nNUMBER(SECTION_SIZE_BITS)=27",
            "little",
        ]
    )
    boot = parse_boot(text + "\n")
    assert (boot.memmap_on_memory, boot.struct_page, boot.section_bits) == ("force", 64, 27)
    assert boot.cmdline == ("console=ttyS0", "memhp_default_state=offline")
    assert (boot.page_size, boot.pageblock_size) == (4096, 2 << 20)
    assert (boot.block_size, boot.blocks) == (128 << 20, 16)
    assert boot.page_ext_line.endswith("bytes of page_ext")


def test_boot_read_without_kcore_or_memmap_on_memory_says_so() -> None:
    sep = "\n@@memhp@@\n"
    parts = ["7.2.0", "#1", "console=hvc0", "KernelPageSize: 64 kB", "Page block order: 8"]
    boot = parse_boot(sep.join([*parts, "10000000", "4", "", "", "", "big"]) + "\n")
    assert (boot.memmap_on_memory, boot.struct_page, boot.section_bits) == (None, None, None)
    assert boot.byteorder == "big"
    assert (boot.page_size, boot.pageblock_size) == (65536, 16 << 20)


def test_boot_read_with_parts_missing_is_refused() -> None:
    with pytest.raises(ValueError, match="not 11"):
        parse_boot("\n@@memhp@@\n".join(["6.1.0"] * 8))
