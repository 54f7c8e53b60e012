"""Reports from the result model: KCIDB v5.3 (validated with kcidb-io's schema), HTML, PNG
maps, and the status classification that keeps kernel verdicts apart from ours."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import kcidb_io
import pytest

from harness import report
from harness.errors import (
    BuildError,
    ConditionNotMet,
    GuestPanic,
    KernelFailure,
    UsageError,
    VMLost,
)
from harness.guest.kpageflags import KPF, mask
from harness.guest.shell import CommandResult, GuestCommandError, GuestToolError
from harness.hotplug.devices import NoAcknowledgement
from harness.hotplug.known import expected_bug, known_bug
from harness.qemu.qmp import EventTimeout
from harness.report import picture
from harness.report.html import html_report
from harness.report.kcidb import BuildOutcome, kcidb
from harness.report.pagemap import BlockView, PageClass, Snapshot, classify
from harness.report.picture import render_png
from harness.report.results import Checkout, Result, StepMap, load, save, save_checkout
from harness.verdict import Status, exit_status, is_harness_bug
from harness.verdict import classify as classify_status


def result(name: str, status: Status, **kw: object) -> Result:
    base: dict[str, object] = dict(
        nodeid=f"testcases/test_dimm.py::{name}[x86_64-debian:6.12]",
        scenario=name,
        arch="x86_64",
        kernel="debian:6.12",
        status=status,
        phase="call",
        start_time=1_790_000_000.0,
        duration=4.2,
        release="6.12.117+deb13-amd64",
        qemu="7.2.22",
        accel="tcg",
    )
    base.update(kw)
    return Result(**base)  # type: ignore[arg-type]


RESULTS = [
    result(
        "test_dimm_online_movable",
        Status.FAIL,
        message="AssertionError: block 40",
        log_excerpt="block 40: expected {RESERVED: 0}, seen {RESERVED: 32768}\n"
        "BUG: Bad page state in process sh  pfn:140000",
        maps=[
            StepMap(
                "maps/x.png",
                [
                    {
                        "step": "dimm0 online_movable",
                        "blocks": [
                            {
                                "index": 40,
                                "state": "online",
                                "zone": "Movable",
                                "pages": {"RESERVED": 32768},
                            }
                        ],
                    }
                ],
            )
        ],
    ),
    result("test_dimm_offline_again", Status.PASS),
    result("test_nvdimm_kmem[1G]", Status.SKIP, message="no nvdimm support"),
    result(
        "test_dimm_online_kernel",
        Status.MISS,
        phase="setup",
        release="",
        qemu="",
        message="BootTimeout: guest not ready",
        log_excerpt="console tail ...",
    ),
]


def test_kcidb_document_validates_against_the_v5_3_schema() -> None:
    doc = kcidb(RESULTS)
    kcidb_io.schema.V5_3.validate_exactly(doc)
    assert [t["status"] for t in doc["tests"]] == ["FAIL", "PASS", "SKIP", "MISS"]
    assert doc["tests"][0]["path"] == "memhp.dimm.dimm_online_movable"
    assert doc["tests"][2]["path"] == "memhp.dimm.nvdimm_kmem-1G-"


def test_kcidb_with_a_series_checkout_and_a_failed_build() -> None:
    checkout = Checkout(
        tree="linux",
        commit="a" * 40,
        patchset_hash="b" * 64,
        message_id="<cover.1@example.org>",
        patches=("mm: one", "mm: two"),
    )
    doc = kcidb(
        RESULTS[:1],
        checkout,
        builds=[BuildOutcome("ppc64le", "build:/x", Status.FAIL, "mm/x.c:1: error: oops")],
    )
    kcidb_io.schema.V5_3.validate_exactly(doc)
    (c,) = doc["checkouts"]
    assert c["patchset_hash"] == "b" * 64 and c["message_id"] == "cover.1@example.org"
    statuses = {b["architecture"]: b["status"] for b in doc["builds"]}
    assert statuses == {"ppc64le": "FAIL", "x86_64": "PASS"}


def test_html_shows_failures_maps_and_console_apart() -> None:
    page = html_report(RESULTS)
    assert "kernel failure" in page and "did not run (infrastructure)" in page
    assert 'src="maps/x.png"' in page and "RESERVED: 32768" in page
    assert "Bad page state" in page and "console tail (infrastructure)" in page


def test_results_round_trip_and_reports_are_written(tmp_path: Path) -> None:
    for r in RESULTS:
        save(r, tmp_path)
    save_checkout(Checkout(tree="linux", commit="c" * 40), tmp_path)
    assert [r.nodeid for r in load(tmp_path)] == sorted(r.nodeid for r in RESULTS)
    kc, page = report.write(tmp_path)
    assert kc.is_file() and page.is_file()


@pytest.mark.parametrize(
    ("exc", "when", "skipped", "status"),
    [
        (None, "call", False, Status.PASS),
        (None, "setup", True, Status.SKIP),
        (AssertionError("flags"), "call", False, Status.FAIL),
        (KernelFailure("panic"), "call", False, Status.FAIL),
        (VMLost("gone"), "call", False, Status.ERROR),
        (VMLost("gone"), "setup", False, Status.MISS),
        (KeyError("harness bug"), "call", False, Status.ERROR),
        (KeyError("harness bug"), "setup", False, Status.ERROR),
        (UsageError("bad input mid-run"), "call", False, Status.ERROR),
        (GuestPanic("panic in the cleanup"), "teardown", False, Status.FAIL),
        (
            GuestToolError(CommandResult("gzip -1", 127, "", "not found")),
            "call",
            False,
            Status.ERROR,
        ),
        (
            GuestCommandError(CommandResult("echo 1 > x", 1, "", "EBUSY")),
            "call",
            False,
            Status.FAIL,
        ),
        (EventTimeout("ACPI_DEVICE_OST", 30.0, []), "call", False, Status.ERROR),
        (NoAcknowledgement("never acknowledged"), "call", False, Status.FAIL),
        (ConditionNotMet("set-up: no slab landed"), "call", False, Status.ERROR),
        (BuildError("compile error"), "setup", False, Status.ERROR),
    ],
)
def test_status_keeps_the_kernel_apart_from_the_infrastructure(
    exc: BaseException | None, when: str, skipped: bool, status: Status
) -> None:
    assert classify_status(exc, when, skipped) is status


@pytest.mark.parametrize(
    ("statuses", "interrupted", "code"),
    [
        ([Status.PASS, Status.SKIP], False, 0),
        ([], False, 0),
        ([Status.PASS, Status.FAIL, Status.ERROR], False, 1),
        ([Status.PASS, Status.ERROR], False, 3),
        ([Status.MISS], False, 3),
        ([Status.PASS], True, 2),
        ([Status.ERROR], True, 2),
        ([Status.FAIL], True, 1),  # an interruption does not undo a kernel failure
    ],
)
def test_exit_status_has_one_meaning_per_code(
    statuses: list[Status], interrupted: bool, code: int
) -> None:
    assert exit_status(statuses, interrupted=interrupted) == code


def test_a_harness_bug_is_told_apart_from_memhp_errors() -> None:
    assert is_harness_bug(KeyError("x")) and is_harness_bug(TypeError("x"))
    assert not is_harness_bug(VMLost("x")) and not is_harness_bug(AssertionError("x"))
    assert not is_harness_bug(None)


def test_page_classes_pick_the_telling_flag() -> None:
    assert classify(mask(KPF.NOPAGE)) is PageClass.NOPAGE
    assert classify(mask(KPF.RESERVED, KPF.OWNER_PRIVATE)) is PageClass.RESERVED
    assert classify(mask(KPF.OWNER_PRIVATE)) is PageClass.MEMMAP
    assert classify(mask(KPF.BUDDY)) is PageClass.FREE
    assert classify(mask(KPF.OFFLINE)) is PageClass.OFFLINE
    assert classify(0) is PageClass.NO_FLAGS
    assert classify(mask(KPF.LRU, KPF.UPTODATE)) is PageClass.IN_USE


def _png_size_and_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    return width, height, zlib.decompress(data[idat + 4 : idat + 4 + length])


def test_png_map_draws_one_tile_per_block_one_column_per_step() -> None:
    pages = 32768  # a 128 MiB block of 4 KiB pages: a 256 x 128 tile
    views = [BlockView(40, "online", "Movable"), BlockView(None, "absent", None)]
    online = Snapshot.of(
        "online", 0x40000, pages, views, [mask(KPF.BUDDY)] * pages + [mask(KPF.RESERVED)] * pages
    )
    removed = Snapshot.of("removed", 0x40000, pages, views, [])  # past max_pfn: no memmap

    width, height, raw = _png_size_and_pixels(render_png([online, removed], "test_x"))

    # labels on the left and on top, a state line under each tile, the legend below
    tiles_top = picture.GAP + 3 * picture.LINE
    assert width == picture.LEFT + 2 * (256 + 4) + 4
    assert height == tiles_top + 2 * (128 + picture.LINE + 4) + 4 + 8 * picture.LINE + 4
    assert removed.histogram(1) == {"NOPAGE": pages}

    def pixel(x: int, y: int) -> bytes:
        row = raw[y * (1 + 3 * width) :][: 1 + 3 * width]  # PNG: a filter byte, then RGB
        return row[1 + 3 * x : 1 + 3 * (x + 1)]

    assert pixel(picture.LEFT, tiles_top + 1) == bytes((60, 170, 80))  # free: green
    legend_top = tiles_top + 2 * (128 + picture.LINE + 4) + 4
    assert pixel(picture.LEFT + 1, legend_top + 2 * picture.LINE + 1) == bytes((60, 170, 80))
    ink = bytes(picture.INK)
    title = [pixel(x, picture.GAP + y) for x in range(60) for y in range(14)]
    assert ink in title  # "TEST_X" is written
    block_label = [pixel(x, tiles_top + y) for x in range(picture.LEFT - 4) for y in range(14)]
    assert ink in block_label  # "MEMORY40"


def test_a_known_kernel_bug_is_matched_by_what_was_seen_on_the_lines_it_is_known_on() -> None:
    leak = "AssertionError: after 20 cycles:\n  MemFree fell by 75 MiB (tolerance 24 MiB)"
    cycles = "test_cycles_dimm_plug_online_offline_unplug"
    bug = known_bug(cycles, (6, 18, 15), leak, "x86_64")
    assert bug is not None and "bf9e4e30f353" in bug.describe()
    assert known_bug(cycles, (6, 17, 13), leak, "x86_64") is None
    assert known_bug("test_x", (6, 18, 15), "Slab grew by 30 MiB", "x86_64") is None  # another
    assert expected_bug("test_cycles_virtio_mem_grow_and_shrink", (6, 18, 15), "x86_64") is bug
    assert expected_bug("test_cycles_virtio_mem_grow_and_shrink", (7, 2, 11), "x86_64") is None


def test_a_known_bug_of_one_arch_is_not_expected_on_another() -> None:
    refused = "Refused: offline refused: memory16: EPERM"
    bug = known_bug("test_memmap_on_memory_dimm", (7, 2, 11), refused, "arm64")
    assert bug is not None and "95a58852b0e5" in bug.describe()
    assert known_bug("test_memmap_on_memory_dimm", (7, 2, 11), refused, "x86_64") is None
    assert known_bug("test_memmap_on_memory_dimm", (6, 12, 57), refused, "arm64") is None
    assert known_bug("test_dimm_online_movable", (7, 2, 11), refused, "arm64") is None  # unlisted
    assert expected_bug("test_memmap_on_memory_dimm", (7, 3, 4), "arm64") is bug
    assert expected_bug("test_memmap_on_memory_dimm", (7, 2, 11), "x86_64") is None
