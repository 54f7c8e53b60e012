"""Decode Linux ``/proc/kpageflags`` into readable flags and histograms.

``/proc/kpageflags`` holds one u64 per pfn, in the kernel's byte order.  This module turns
those words into names ("BUDDY|UPTODATE"), per-range histograms and runs, so
failing checks can say e.g.
``block 33: expected {BUDDY: >=90%}, seen {BUDDY: 31000, NOPAGE: 768}``.

Conventions:

* Flags are always listed in ascending bit order, joined by ``|``
  (0x800010 -> ``DIRTY|OFFLINE``).  Ascending order is stable across kernels
  and matches how the bits are declared in the kernel headers.
* A value with no flags set is written ``{}``, as the kernel community does.
* Set bits without a known name are shown as ``BIT<n>`` (e.g. ``BIT45``) so
  nothing is ever silently dropped.
"""

from __future__ import annotations

import enum
import itertools
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

ENTRY_SIZE = 8  # bytes per pfn in /proc/kpageflags
U64_MAX = (1 << 64) - 1
NO_FLAGS = "{}"


class KPF(enum.IntEnum):
    """Bit numbers of /proc/kpageflags (value is the bit, not the mask)."""

    # Stable UAPI bits: include/uapi/linux/kernel-page-flags.h
    LOCKED = 0
    ERROR = 1
    REFERENCED = 2
    UPTODATE = 3
    DIRTY = 4
    LRU = 5
    ACTIVE = 6
    SLAB = 7
    WRITEBACK = 8
    RECLAIM = 9
    BUDDY = 10
    MMAP = 11
    ANON = 12
    SWAPCACHE = 13
    SWAPBACKED = 14
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    UNEVICTABLE = 18
    HWPOISON = 19
    NOPAGE = 20
    KSM = 21
    THP = 22
    OFFLINE = 23
    ZERO_PAGE = 24
    IDLE = 25
    PGTABLE = 26
    # Kernel-internal raw page->flags bits: include/linux/kernel-page-flags.h.
    # Not ABI; names and meanings drift between kernel versions.
    RESERVED = 32
    MLOCKED = 33
    # Renamed KPF_OWNER_2 in 6.12 (same bit); see ALIASES / flag_name(alias=).
    MAPPEDTODISK = 34
    PRIVATE = 35
    PRIVATE_2 = 36
    OWNER_PRIVATE = 37
    ARCH = 38
    UNCACHED = 39  # removed in 6.12; kept so older guests still decode
    SOFTDIRTY = 40
    ARCH_2 = 41
    ARCH_3 = 42  # new in 6.12


# Alternative spellings of the same bit, accepted by parse_flags() and
# optionally produced by flag_name(alias=True).
ALIASES: Mapping[str, KPF] = MappingProxyType({"OWNER_2": KPF.MAPPEDTODISK})
_ALIAS_BY_BIT: Mapping[int, str] = MappingProxyType(
    {int(bit): name for name, bit in ALIASES.items()}
)

# Masks (1 << bit) for the flags hotplug checks use most.
NOPAGE = 1 << KPF.NOPAGE
BUDDY = 1 << KPF.BUDDY
RESERVED = 1 << KPF.RESERVED
OFFLINE = 1 << KPF.OFFLINE
OWNER_PRIVATE = 1 << KPF.OWNER_PRIVATE

_KNOWN_BITS = frozenset(int(flag) for flag in KPF)
_BIT_TOKEN = re.compile(r"BIT(\d+)")


def _check_u64(value: int) -> int:
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"kpageflags value {value:#x} is not a u64")
    return value


def mask(*flags: KPF) -> int:
    """Combine flags into a bit mask: mask(KPF.BUDDY, KPF.UPTODATE) == 0x408."""
    result = 0
    for flag in flags:
        result |= 1 << flag
    return result


def has(value: int, flag: KPF) -> bool:
    """True if ``value`` has ``flag``'s bit set."""
    return bool((value >> flag) & 1)


def flag_name(bit: KPF | int, *, alias: bool = False) -> str:
    """Name of one bit; ``BIT<n>`` if unknown, the alias if ``alias`` is set."""
    if alias and bit in _ALIAS_BY_BIT:
        return _ALIAS_BY_BIT[bit]
    return KPF(bit).name if bit in _KNOWN_BITS else f"BIT{int(bit)}"


def decode(value: int) -> tuple[KPF | int, ...]:
    """Set bits of ``value`` in ascending order; unknown bits stay plain ints."""
    remaining = _check_u64(value)
    bits: list[KPF | int] = []
    while remaining:
        bit = (remaining & -remaining).bit_length() - 1
        remaining &= remaining - 1
        bits.append(KPF(bit) if bit in _KNOWN_BITS else bit)
    return tuple(bits)


def format_flags(value: int, *, alias: bool = False) -> str:
    """``"DIRTY|OFFLINE"`` style rendering (ascending bits), ``"{}"`` for 0."""
    names = [flag_name(bit, alias=alias) for bit in decode(value)]
    return "|".join(names) if names else NO_FLAGS


def _valid_names() -> str:
    names = [*KPF.__members__, *ALIASES, "BIT<n>", "0x<hex>", NO_FLAGS]
    return ", ".join(names)


def _parse_token(token: str) -> int:
    if token.lower().startswith("0x"):
        try:
            return _check_u64(int(token, 16))
        except ValueError:
            raise ValueError(f"bad hex page flags {token!r}") from None
    # Case-insensitive and tolerant of the C "KPF_" prefix: these come from
    # command lines where people paste names from the kernel header.
    name = token.upper().removeprefix("KPF_")
    if name in KPF.__members__:
        return 1 << KPF[name]
    if name in ALIASES:
        return 1 << ALIASES[name]
    bit_match = _BIT_TOKEN.fullmatch(name)
    if bit_match and int(bit_match.group(1)) < 64:
        return 1 << int(bit_match.group(1))
    raise ValueError(f"unknown page flag {token!r}; valid: {_valid_names()}")


def parse_flags(text: str) -> int:
    """Inverse of format_flags: ``"BUDDY|UPTODATE"`` -> 0x408, ``"{}"`` -> 0.

    Tokens are flag names (case-insensitive, optional ``KPF_`` prefix),
    aliases, ``BIT<n>`` or ``0x`` hex values, joined by ``|``.
    """
    stripped = text.strip()
    if stripped == NO_FLAGS:
        return 0
    value = 0
    for raw_token in stripped.split("|"):
        token = raw_token.strip()
        if not token:
            raise ValueError(f"empty flag name in {text!r}")
        value |= _parse_token(token)
    return value


def unpack(raw: bytes, byteorder: str = "little") -> list[int]:
    """Split raw /proc/kpageflags bytes into one u64 per pfn, in the guest's byte order."""
    if len(raw) % ENTRY_SIZE:
        raise ValueError(
            f"kpageflags data is {len(raw)} bytes, not a multiple of {ENTRY_SIZE} (short read?)"
        )
    order = "<" if byteorder == "little" else ">"
    return list(struct.unpack(f"{order}{len(raw) // ENTRY_SIZE}Q", raw))


@dataclass(frozen=True)
class Histogram:
    """How many pages carry each exact flag value."""

    counts: Mapping[int, int]
    total: int = field(init=False)

    def __post_init__(self) -> None:
        # Copy into a read-only view so a frozen Histogram really is immutable.
        frozen = MappingProxyType(dict(self.counts))
        if any(n < 0 for n in frozen.values()):
            raise ValueError("histogram counts must be non-negative")
        object.__setattr__(self, "counts", frozen)
        object.__setattr__(self, "total", sum(frozen.values()))

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        """Histogram of per-pfn values, e.g. ``Histogram.of(unpack(raw))``."""
        return cls(Counter(values))

    def count(self, where: Callable[[int], bool]) -> int:
        """Pages whose value satisfies ``where``."""
        return sum(n for value, n in self.counts.items() if where(value))

    def exactly(self, value: int) -> int:
        """Pages whose value is exactly ``value``."""
        return self.counts.get(value, 0)

    def with_all(self, bits: int) -> int:
        """Pages having every bit of mask ``bits``."""
        return self.count(lambda value: value & bits == bits)

    def with_any(self, bits: int) -> int:
        """Pages having at least one bit of mask ``bits``."""
        return self.count(lambda value: bool(value & bits))

    def only(self, bits: int) -> int:
        """Pages with no bits outside mask ``bits`` (flagless pages included)."""
        return self.count(lambda value: not value & ~bits)

    def with_flag(self, flag: KPF) -> int:
        """Pages having ``flag`` set."""
        return self.with_all(1 << flag)

    def without_flag(self, flag: KPF) -> int:
        """Pages not having ``flag`` set."""
        return self.total - self.with_flag(flag)

    def fraction(self, flag: KPF) -> float:
        """Share of pages having ``flag``; 0.0 for an empty histogram."""
        return self.with_flag(flag) / self.total if self.total else 0.0

    def most_common(self, n: int | None = None) -> list[tuple[int, int]]:
        """(value, count) pairs by count desc; ties by value for stable output."""
        ordered = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return ordered if n is None else ordered[:n]

    def summary(self, limit: int = 8) -> str:
        """One line, e.g. ``{BUDDY: 31000, NOPAGE: 768}``; extras as +N more."""
        shown = [f"{format_flags(v)}: {n}" for v, n in self.most_common(limit)]
        hidden = len(self.counts) - len(shown)
        if hidden > 0:
            shown.append(f"+{hidden} more")
        return "{" + ", ".join(shown) + "}"

    def __str__(self) -> str:
        rows = self.most_common()
        if not rows:
            return "  (no pages)"
        width = max(7, len(str(rows[0][1])))
        return "\n".join(f"{n:>{width}}  {format_flags(v)}" for v, n in rows)


@dataclass(frozen=True)
class Run:
    """``length`` consecutive pfns from ``start_pfn`` sharing one value."""

    start_pfn: int
    length: int
    value: int

    @property
    def end_pfn(self) -> int:
        """First pfn after the run (exclusive end)."""
        return self.start_pfn + self.length

    def __str__(self) -> str:
        return (
            f"pfn {self.start_pfn:#x}-{self.end_pfn - 1:#x} "
            f"({self.length}): {format_flags(self.value)}"
        )


def runs(values: Sequence[int], start_pfn: int = 0) -> list[Run]:
    """Run-length encode per-pfn values; ``values[0]`` is ``start_pfn``."""
    result: list[Run] = []
    pfn = start_pfn
    for value, group in itertools.groupby(values):
        length = sum(1 for _ in group)
        result.append(Run(pfn, length, value))
        pfn += length
    return result


def leading_run(values: Sequence[int], start_pfn: int = 0) -> Run | None:
    """First run only, without encoding the rest; None if ``values`` is empty."""
    if not values:
        return None
    first = values[0]
    length = next((i for i, value in enumerate(values) if value != first), len(values))
    return Run(start_pfn, length, first)


def pfn_range(phys_start: int, size: int, page_size: int) -> range:
    """Pfns covering [phys_start, phys_start + size); both must be aligned."""
    if page_size <= 0 or page_size & (page_size - 1):
        raise ValueError(f"page size {page_size} is not a power of two")
    if phys_start < 0 or size < 0:
        raise ValueError(f"negative range: start {phys_start:#x} size {size:#x}")
    if phys_start % page_size or size % page_size:
        raise ValueError(
            f"range {phys_start:#x}+{size:#x} is not aligned to page size {page_size:#x}"
        )
    return range(phys_start // page_size, (phys_start + size) // page_size)


def byte_range(pfns: range) -> tuple[int, int]:
    """(file offset, length) of ``pfns``' entries in /proc/kpageflags."""
    if pfns.step != 1:
        raise ValueError(f"pfn range {pfns} must be contiguous (step 1)")
    if pfns.start < 0:
        raise ValueError(f"pfn range {pfns} starts below 0")
    return pfns.start * ENTRY_SIZE, len(pfns) * ENTRY_SIZE
