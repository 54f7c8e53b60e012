"""Unit tests for harness.kpageflags."""

from __future__ import annotations

import struct

import pytest

from harness.guest.kpageflags import (
    BUDDY,
    KPF,
    NOPAGE,
    OFFLINE,
    OWNER_PRIVATE,
    RESERVED,
    Histogram,
    Run,
    byte_range,
    decode,
    flag_name,
    format_flags,
    has,
    leading_run,
    mask,
    parse_flags,
    pfn_range,
    runs,
    unpack,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0x2100000000, "RESERVED|OWNER_PRIVATE"),
        (0x2000000000, "OWNER_PRIVATE"),
        (0x800010, "DIRTY|OFFLINE"),
        (0x100000, "NOPAGE"),
        (0x400, "BUDDY"),
        (0x408, "UPTODATE|BUDDY"),
        (0, "{}"),
        (1 << 45, "BIT45"),
        ((1 << 63) | 1, "LOCKED|BIT63"),
    ],
)
def test_format_and_parse_round_trip(value: int, text: str) -> None:
    assert format_flags(value) == text
    assert parse_flags(text) == value


def test_decode_ascending_with_unknown_bits_as_ints() -> None:
    assert decode(0x2100000000) == (KPF.RESERVED, KPF.OWNER_PRIVATE)
    assert decode(0x800010) == (KPF.DIRTY, KPF.OFFLINE)
    assert decode(0) == ()
    decoded = decode((1 << 45) | BUDDY)
    assert decoded == (KPF.BUDDY, 45)
    assert not isinstance(decoded[1], KPF)


def test_decode_rejects_non_u64() -> None:
    with pytest.raises(ValueError, match="u64"):
        decode(-1)
    with pytest.raises(ValueError, match="u64"):
        decode(1 << 64)


def test_kpf_bits_match_kernel_headers() -> None:
    stable = [
        "LOCKED", "ERROR", "REFERENCED", "UPTODATE", "DIRTY", "LRU", "ACTIVE",
        "SLAB", "WRITEBACK", "RECLAIM", "BUDDY", "MMAP", "ANON", "SWAPCACHE",
        "SWAPBACKED", "COMPOUND_HEAD", "COMPOUND_TAIL", "HUGE", "UNEVICTABLE",
        "HWPOISON", "NOPAGE", "KSM", "THP", "OFFLINE", "ZERO_PAGE", "IDLE", "PGTABLE",
    ]  # fmt: skip
    internal = [
        "RESERVED", "MLOCKED", "MAPPEDTODISK", "PRIVATE", "PRIVATE_2",
        "OWNER_PRIVATE", "ARCH", "UNCACHED", "SOFTDIRTY", "ARCH_2", "ARCH_3",
    ]  # fmt: skip
    expected = dict(zip(stable, range(27), strict=True))
    expected |= dict(zip(internal, range(32, 43), strict=True))
    assert {flag.name: int(flag) for flag in KPF} == expected


def test_named_masks_and_has() -> None:
    assert (NOPAGE, BUDDY, OFFLINE) == (0x100000, 0x400, 0x800000)
    assert (RESERVED, OWNER_PRIVATE) == (0x100000000, 0x2000000000)
    assert mask(KPF.BUDDY, KPF.UPTODATE) == 0x408
    assert mask() == 0
    assert has(0x2100000000, KPF.RESERVED)
    assert not has(0x2100000000, KPF.BUDDY)


def test_owner_2_alias() -> None:
    assert flag_name(KPF.MAPPEDTODISK) == "MAPPEDTODISK"
    assert flag_name(KPF.MAPPEDTODISK, alias=True) == "OWNER_2"
    assert flag_name(KPF.BUDDY, alias=True) == "BUDDY"
    assert flag_name(45) == "BIT45"
    assert format_flags(1 << 34, alias=True) == "OWNER_2"
    assert parse_flags("OWNER_2") == parse_flags("MAPPEDTODISK") == 1 << 34


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("BUDDY|UPTODATE", 0x408),
        ("0x800010", 0x800010),
        ("0X800010", 0x800010),
        (" buddy | kpf_uptodate ", 0x408),
        ("BUDDY|0x1", 0x401),
        ("  {}  ", 0),
        ("bit45", 1 << 45),
    ],
)
def test_parse_flags_forms(text: str, value: int) -> None:
    assert parse_flags(text) == value


def test_parse_flags_bad_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown page flag 'BUDYY'") as info:
        parse_flags("BUDDY|BUDYY")
    message = str(info.value)
    assert "BUDDY" in message
    assert "OWNER_PRIVATE" in message
    assert "OWNER_2" in message


@pytest.mark.parametrize("text", ["", "BUDDY||LRU", "0xzz", "BIT64", "0x1" + "0" * 16])
def test_parse_flags_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_flags(text)


def test_unpack_little_endian_u64s() -> None:
    values = [0x2100000000, 0x400, 0, (1 << 64) - 1]
    raw = struct.pack("<4Q", *values)
    assert unpack(raw) == values
    assert unpack(b"") == []


def test_unpack_big_endian_u64s_of_s390x() -> None:
    # BUDDY (bit 10) of a big-endian guest read as little-endian would be bit 50
    raw = struct.pack(">2Q", 1 << 10, 0x2100000000)
    assert unpack(raw, "big") == [1 << 10, 0x2100000000]
    assert unpack(raw)[0] == 1 << 50


def test_unpack_rejects_partial_entry() -> None:
    with pytest.raises(ValueError, match="12 bytes, not a multiple of 8"):
        unpack(b"\0" * 12)


def _mix() -> Histogram:
    return Histogram.of([BUDDY] * 5 + [NOPAGE] * 2 + [RESERVED | OWNER_PRIVATE, 0])


def test_histogram_counts() -> None:
    hist = _mix()
    assert hist.total == 9
    assert hist.counts[BUDDY] == 5
    assert hist.exactly(NOPAGE) == 2
    assert hist.exactly(OFFLINE) == 0
    assert hist.with_flag(KPF.BUDDY) == 5
    assert hist.without_flag(KPF.BUDDY) == 4
    assert hist.with_flag(KPF.RESERVED) == 1
    assert hist.fraction(KPF.NOPAGE) == pytest.approx(2 / 9)
    assert hist.count(lambda v: v == 0) == 1
    assert hist.with_all(RESERVED | OWNER_PRIVATE) == 1
    assert hist.with_any(BUDDY | NOPAGE) == 7
    assert hist.only(BUDDY) == 6  # the flagless page counts as "only BUDDY"


def test_histogram_most_common_is_deterministic() -> None:
    hist = Histogram.of([NOPAGE, BUDDY, BUDDY, OFFLINE])
    # Ties are broken by ascending value: NOPAGE (bit 20) before OFFLINE (23).
    assert hist.most_common() == [(BUDDY, 2), (NOPAGE, 1), (OFFLINE, 1)]
    assert hist.most_common(1) == [(BUDDY, 2)]


def test_histogram_summary_and_str() -> None:
    hist = Histogram.of([BUDDY] * 31000 + [NOPAGE] * 768)
    assert hist.summary() == "{BUDDY: 31000, NOPAGE: 768}"
    assert str(hist) == "  31000  BUDDY\n    768  NOPAGE"
    assert str(_mix()).splitlines()[-1] == "      1  RESERVED|OWNER_PRIVATE"
    assert "      1  {}" in str(_mix()).splitlines()


def test_histogram_summary_caps_entries() -> None:
    hist = Histogram.of(1 << bit for bit in range(12))
    summary = hist.summary(limit=8)
    assert summary.startswith("{LOCKED: 1, ERROR: 1,")
    assert summary.endswith(", +4 more}")
    assert summary.count(":") == 8


def test_histogram_empty_and_immutable() -> None:
    empty = Histogram.of([])
    assert empty.total == 0
    assert empty.fraction(KPF.BUDDY) == 0.0
    assert empty.summary() == "{}"
    assert str(empty) == "  (no pages)"
    source = {BUDDY: 3}
    hist = Histogram(source)
    source[BUDDY] = 99
    assert hist.total == 3
    assert hist.exactly(BUDDY) == 3
    with pytest.raises(TypeError):
        hist.counts[BUDDY] = 1  # type: ignore[index]


def test_histogram_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        Histogram({BUDDY: -1})


def test_runs_encode_consecutive_values() -> None:
    values = [OWNER_PRIVATE] * 3 + [BUDDY] * 2 + [OWNER_PRIVATE]
    assert runs(values, 0x1000) == [
        Run(0x1000, 3, OWNER_PRIVATE),
        Run(0x1003, 2, BUDDY),
        Run(0x1005, 1, OWNER_PRIVATE),
    ]
    assert runs([], 5) == []
    assert Run(0x1000, 3, OWNER_PRIVATE).end_pfn == 0x1003
    assert str(Run(0x1000, 3, OWNER_PRIVATE)) == "pfn 0x1000-0x1002 (3): OWNER_PRIVATE"


def test_leading_run() -> None:
    values = [OWNER_PRIVATE] * 512 + [BUDDY] * 10
    assert leading_run(values, 0x8000) == Run(0x8000, 512, OWNER_PRIVATE)
    assert leading_run([BUDDY] * 4) == Run(0, 4, BUDDY)
    assert leading_run([]) is None


def test_pfn_range_4k_pages() -> None:
    pfns = pfn_range(0x1_0000_0000, 128 << 20, 4096)
    assert pfns == range(0x100000, 0x108000)
    assert byte_range(pfns) == (0x100000 * 8, 0x8000 * 8)


def test_pfn_range_64k_pages() -> None:
    pfns = pfn_range(0x1_0000_0000, 512 << 20, 64 << 10)
    assert pfns == range(0x10000, 0x12000)
    assert len(pfns) == 8192
    assert byte_range(pfns) == (0x10000 * 8, 8192 * 8)


@pytest.mark.parametrize(
    ("start", "size", "page_size"),
    [
        (0x1000, 0x10000, 64 << 10),  # start misaligned for 64 KiB
        (0x10000, 0x1800, 4096),  # size misaligned
        (0, 4096, 3000),  # not a power of two
        (-4096, 4096, 4096),
    ],
)
def test_pfn_range_rejects_bad_geometry(start: int, size: int, page_size: int) -> None:
    with pytest.raises(ValueError):
        pfn_range(start, size, page_size)


def test_pfn_range_misaligned_message() -> None:
    with pytest.raises(ValueError, match="not aligned to page size 0x10000"):
        pfn_range(0x1000, 0x10000, 64 << 10)


def test_byte_range_rejects_strided_range() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        byte_range(range(0, 10, 2))
