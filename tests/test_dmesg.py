"""Unit tests for harness.dmesg: which kernel log lines fail a scenario."""

from __future__ import annotations

import pytest

from harness.hotplug.dmesg import Splat, find_splats, format_splats

SPLATS = [
    "[   12.345678] WARNING: CPU: 1 PID: 42 at mm/memory_hotplug.c:123 online_pages+0x1a/0x2b0",
    "[   13.000001] BUG: Bad page state in process kworker/u4:1  pfn:140000",
    "[   14.100000] Kernel panic - not syncing: Fatal exception",
    "[   15.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:120]",
    "[   16.000000] Oops: general protection fault, probably for non-canonical address",
    "[   17.000000] INFO: task sh:99 blocked for more than 120 seconds.",
]
ORDINARY = [
    "[    0.000000] Built 1 zonelists, mobility grouping on.  Total pages: 515899",
    "[   20.000000] memory memory32: Offline failed.",
    "[   21.000000] Fallback order for Node 0: 0",
    "[   22.000000] BUGS: none here, and no warning: either",
]


def test_find_splats_finds_each_complaint() -> None:
    found = find_splats(SPLATS)
    assert [s.line for s in found] == SPLATS
    assert [s.kind for s in found][:3] == ["warning", "bad page", "panic"]
    assert found[5].kind == "hung task"


def test_find_splats_ignores_ordinary_lines() -> None:
    assert find_splats(ORDINARY) == []


def test_find_splats_one_splat_per_line() -> None:
    line = "[ 1.0] WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:1 Kernel panic"
    assert find_splats([line]) == [Splat("warning", line)]


def test_allow_suppresses_only_matching_lines() -> None:
    found = find_splats(SPLATS, allow=[r"mm/memory_hotplug\.c:\d+", r"soft lockup"])
    assert [s.line for s in found] == [SPLATS[1], SPLATS[2], SPLATS[4], SPLATS[5]]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("BUG: Bad page state in process sh  pfn:140000", "bad page"),
        ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:120]", "soft lockup"),
        ("BUG: KASAN: use-after-free in offline_pages+0x10/0x20", "sanitizer"),
    ],
)
def test_find_splats_names_the_specific_kind(line: str, kind: str) -> None:
    assert find_splats([line])[0].kind == kind


def test_format_splats_names_kinds_and_clips_context() -> None:
    splats = find_splats(SPLATS[:3])
    context = [f"line {i}" for i in range(100)]
    text = format_splats(splats, context, limit=5)
    assert text.startswith("guest kernel logged 3 problem line(s) during the test:")
    for s in splats:
        assert f"[{s.kind}] {s.line}" in text
    assert "  line 4" in text
    assert "line 5" not in text
    assert text.endswith("... 95 more lines")


def test_format_splats_keeps_short_context_whole() -> None:
    text = format_splats([Splat("oops", "Oops")], ["a", "b"])
    assert text.splitlines()[-3:] == ["dmesg during the test:", "  a", "  b"]
