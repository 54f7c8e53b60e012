"""Assertions with messages a kernel developer can act on: expected vs seen, per block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.guest.kpageflags import KPF, Histogram, format_flags, leading_run, mask
from harness.guest.memory import MemoryBlock


class Refused(AssertionError):
    """The kernel refused a step the scenario asked for (a block would not go online or
    offline): a failed check, which a cleanup may expect."""


@dataclass(frozen=True)
class FlagRule:
    """A property every block's page-flag histogram must have."""

    description: str
    problem: Callable[[Histogram], str | None]  # None when satisfied

    def __str__(self) -> str:
        return self.description


def every_page_is(value: int) -> FlagRule:
    """Every page reads exactly ``value`` (e.g. NOPAGE, or {} for no flags at all); there
    must be pages."""
    name = format_flags(value)

    def problem(h: Histogram) -> str | None:
        if not h.total:
            return NOTHING_TO_CHECK
        bad = h.total - h.exactly(value)
        return f"{bad} pages not {name}" if bad else None

    return FlagRule(f"every page {name}", problem)


def no_page(*flags: KPF) -> FlagRule:
    """No page carries any of ``flags``; there must be pages."""
    bits = mask(*flags)
    names = " or ".join(f.name for f in flags)

    def problem(h: Histogram) -> str | None:
        if not h.total:
            return NOTHING_TO_CHECK
        bad = h.with_any(bits)
        return f"{bad} pages with {names}" if bad else None

    return FlagRule(f"no page {names}", problem)


def at_least(flag: KPF, fraction: float) -> FlagRule:
    """At least ``fraction`` of the pages carry ``flag`` (an empty histogram has 0 %)."""

    def problem(h: Histogram) -> str | None:
        seen = h.fraction(flag)
        return None if seen >= fraction else f"only {seen:.0%} {flag.name}"

    return FlagRule(f">= {fraction:.0%} {flag.name}", problem)


# Flags of a page the allocator has handed out: page cache and anonymous memory, slab,
# page tables, parts of a compound page.
HANDED_OUT = (KPF.LRU, KPF.SLAB, KPF.PGTABLE, KPF.COMPOUND_HEAD, KPF.COMPOUND_TAIL)


def at_least_free_or_in_use(fraction: float) -> FlagRule:
    """At least ``fraction`` of the pages are in the buddy allocator or handed out by it
    (HANDED_OUT): memory that has been online long enough for the guest to use it. A page
    onlining never freed carries neither (an empty histogram has 0 %)."""
    bits = mask(KPF.BUDDY, *HANDED_OUT)

    def problem(h: Histogram) -> str | None:
        seen = h.with_any(bits) / h.total if h.total else 0.0
        return None if seen >= fraction else f"only {seen:.0%} BUDDY or in use"

    return FlagRule(f">= {fraction:.0%} BUDDY or in use", problem)


NOTHING_TO_CHECK = "no pages read: a rule over zero pages proves nothing"


def flags_report(
    seen: dict[int, tuple[range, Histogram]], rules: Sequence[FlagRule], why: str
) -> str | None:
    """None if every block satisfies every rule, else the per-block failure text. No blocks
    at all, or a block with no pages, fails: a rule over nothing holds for any kernel."""
    lines = []
    failed = not seen or not rules
    if not seen:
        lines.append("  FAIL no memory blocks to check")
    for index, (pfns, hist) in sorted(seen.items()):
        problems = [p for rule in rules if (p := rule.problem(hist))]
        if not hist.total:
            problems = [NOTHING_TO_CHECK]
        failed |= bool(problems)
        mark = "FAIL" if problems else "ok  "
        lines.append(
            f"  {mark} memory{index} pfn {pfns.start:#x}-{pfns.stop - 1:#x}: "
            f"{hist.summary()}" + (f"  <- {'; '.join(problems)}" if problems else "")
        )
    if not failed:
        return None
    head = [
        f"page flags: expected {', '.join(map(str, rules))}",
        f"  expectation: {why}" if why else "",
        "  seen per block:",
    ]
    return "\n".join([h for h in head if h] + lines)


def memmap_report(
    seen: dict[int, tuple[range, list[int]]], pages: int, flags: int, why: str
) -> str | None:
    """Each block must start with exactly ``pages`` pfns of value ``flags`` (its memmap);
    no blocks, or a block with no pfns read, fails."""
    lines, failed = [], not seen
    if not seen:
        lines.append("  FAIL no memory blocks to check")
    for index, (pfns, values) in sorted(seen.items()):
        lead = leading_run(values, pfns.start)
        got = lead.length if lead and lead.value == flags else 0
        # With no memmap expected, the block must not start with one.
        bad = got != pages if pages else bool(lead and lead.value == flags and flags)
        bad |= not values
        failed |= bad
        first = str(lead) if lead else "nothing readable"
        lines.append(f"  {'FAIL' if bad else 'ok  '} memory{index}: leading run {first}")
    if not failed:
        return None
    want = f"{pages} pfns {format_flags(flags)}" if pages else "no self-hosted memmap"
    return "\n".join(
        [
            f"memmap_on_memory: expected each block to start with {want}",
            f"  expectation: {why}",
            "  seen per block:",
            *lines,
        ]
    )


def virtio_mem_report(
    seen: dict[int, tuple[range, Histogram]],
    *,
    unplugged: int,
    plugged_bytes: int,
    page_size: int,
    why: str,
) -> str | None:
    """virtio-mem blocks: unplugged sub-blocks read exactly ``unplugged`` (never BUDDY),
    plugged pages read like online memory, and together they add up to the device size."""
    offline_bit = 1 << KPF.OFFLINE
    # A device's memory stays online while the guest runs (from boot, after a reset), so
    # its own pages land there: ZONE_MOVABLE is where movable allocations go first.
    online_rules = (no_page(KPF.NOPAGE, KPF.RESERVED), at_least_free_or_in_use(0.8))
    lines, failed, plugged = [], not seen, 0
    if not seen:
        lines.append("  FAIL no memory blocks to check")
    for index, (_, hist) in sorted(seen.items()):
        fake = Histogram({v: n for v, n in hist.counts.items() if v & offline_bit})
        real = Histogram({v: n for v, n in hist.counts.items() if not v & offline_bit})
        plugged += real.total * page_size
        problems = [] if hist.total else [NOTHING_TO_CHECK]
        if fake.total != fake.exactly(unplugged):
            problems.append(f"unplugged pages not all {format_flags(unplugged)}")
        if real.total:
            problems += [p for rule in online_rules if (p := rule.problem(real))]
        failed |= bool(problems)
        lines.append(
            f"  {'FAIL' if problems else 'ok  '} memory{index}: plugged "
            f"{real.summary()}, unplugged {fake.summary()}"
            + (f"  <- {'; '.join(problems)}" if problems else "")
        )
    if plugged != plugged_bytes:
        failed = True
        lines.append(
            f"  FAIL plugged pages add up to {plugged >> 20} MiB, device says "
            f"{plugged_bytes >> 20} MiB"
        )
    if not failed:
        return None
    return "\n".join(
        [
            f"virtio-mem: expected unplugged sub-blocks {format_flags(unplugged)}, "
            "plugged ones like online memory",
            f"  expectation: {why}",
            "  seen per block:",
            *lines,
        ]
    )


def blocks_report(
    blocks: Sequence[MemoryBlock], state: str, zone: str | None, why: str
) -> str | None:
    """None if every block is in ``state`` (and ``zone``), else a per-block table."""
    bad = [b for b in blocks if b.state != state or (zone is not None and b.zone != zone)]
    if not bad and blocks:
        return None
    want = state + (f" in zone {zone}" if zone else "")
    lines = [f"memory blocks: expected {want}" + (f" ({why})" if why else "")]
    if not blocks:
        lines.append("  no memory blocks found for the device")
    for b in blocks:
        zones = f" zone {b.zone}" if b.zone else f" (valid_zones {' '.join(b.valid_zones)})"
        seen = b.state + zones
        lines.append(f"  {'FAIL' if b in bad else 'ok  '} memory{b.index}: {seen}")
    return "\n".join(lines)
