"""Unit tests for harness.hotplug.checks: page-flag rules over histograms. Each rule fails
on an empty histogram (a rule over zero pages proves nothing) and on the page a plausible
kernel bug leaves behind."""

from __future__ import annotations

from harness.guest.kpageflags import KPF, Histogram, mask
from harness.hotplug.checks import (
    NOTHING_TO_CHECK,
    at_least,
    at_least_free_or_in_use,
    every_page_is,
    no_page,
    virtio_mem_report,
)

BUDDY, LRU, OFFLINE, DIRTY = (mask(f) for f in (KPF.BUDDY, KPF.LRU, KPF.OFFLINE, KPF.DIRTY))
EMPTY = Histogram({})


def test_every_rule_fails_on_zero_pages() -> None:
    assert every_page_is(0).problem(EMPTY) == NOTHING_TO_CHECK
    assert no_page(KPF.RESERVED).problem(EMPTY) == NOTHING_TO_CHECK
    assert at_least(KPF.BUDDY, 0.8).problem(EMPTY) == "only 0% BUDDY"
    assert at_least_free_or_in_use(0.8).problem(EMPTY) == "only 0% BUDDY or in use"


def test_free_or_in_use_counts_page_cache_but_not_pages_never_freed() -> None:
    rule = at_least_free_or_in_use(0.8)
    assert rule.problem(Histogram({BUDDY: 79, LRU | DIRTY: 20, 0: 1})) is None
    assert rule.problem(Histogram({BUDDY: 70, 0: 30})) == "only 70% BUDDY or in use"


def test_virtio_mem_report_passes_a_used_block_and_names_a_wrong_one() -> None:
    pages, page = 100, 4096
    used = Histogram({BUDDY: 60, LRU: 30, 0: 2, OFFLINE | DIRTY: 8})
    assert (
        virtio_mem_report(
            {8: (range(pages), used)},
            unplugged=OFFLINE | DIRTY,
            plugged_bytes=92 * page,
            page_size=page,
            why="w",
        )
        is None
    )
    never_freed = Histogram({0: 92, OFFLINE | DIRTY: 8})
    report = virtio_mem_report(
        {8: (range(pages), never_freed)},
        unplugged=OFFLINE | DIRTY,
        plugged_bytes=92 * page,
        page_size=page,
        why="w",
    )
    assert report is not None and "FAIL memory8" in report and "only 0% BUDDY or in use" in report
    nothing = virtio_mem_report({}, unplugged=OFFLINE, plugged_bytes=0, page_size=page, why="w")
    assert nothing is not None and "no memory blocks to check" in nothing
