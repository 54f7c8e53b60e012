"""Assertions with messages a kernel developer can act on: expected vs seen, per block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.guest import MemoryBlock
from harness.kpageflags import KPF, Histogram, format_flags, mask


@dataclass(frozen=True)
class FlagRule:
    """A property every block's page-flag histogram must have."""

    description: str
    problem: Callable[[Histogram], str | None]  # None when satisfied

    def __str__(self) -> str:
        return self.description


def every_page(*flags: KPF) -> FlagRule:
    bits = mask(*flags)
    name = format_flags(bits)

    def problem(h: Histogram) -> str | None:
        bad = h.total - h.with_all(bits)
        return f"{bad} pages without {name}" if bad else None

    return FlagRule(f"every page {name}", problem)


def no_page(*flags: KPF) -> FlagRule:
    bits = mask(*flags)
    names = " or ".join(f.name for f in flags)

    def problem(h: Histogram) -> str | None:
        bad = h.with_any(bits)
        return f"{bad} pages with {names}" if bad else None

    return FlagRule(f"no page {names}", problem)


def at_least(flag: KPF, fraction: float) -> FlagRule:
    def problem(h: Histogram) -> str | None:
        seen = h.fraction(flag)
        return None if seen >= fraction else f"only {seen:.0%} {flag.name}"

    return FlagRule(f">= {fraction:.0%} {flag.name}", problem)


def flags_report(seen: dict[int, tuple[range, Histogram]], rules: Sequence[FlagRule],
                 why: str) -> str | None:
    """None if every block satisfies every rule, else the per-block failure text."""
    lines = []
    failed = False
    for index, (pfns, hist) in sorted(seen.items()):
        problems = [p for rule in rules if (p := rule.problem(hist))]
        failed |= bool(problems)
        mark = "FAIL" if problems else "ok  "
        lines.append(f"  {mark} memory{index} pfn {pfns.start:#x}-{pfns.stop - 1:#x}: "
                     f"{hist.summary()}" + (f"  <- {'; '.join(problems)}" if problems else ""))
    if not failed:
        return None
    head = [f"page flags: expected {', '.join(map(str, rules))}",
            f"  expectation: {why}" if why else "", "  seen per block:"]
    return "\n".join([h for h in head if h] + lines)


def blocks_report(blocks: Sequence[MemoryBlock], state: str, zone: str | None,
                  why: str) -> str | None:
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
