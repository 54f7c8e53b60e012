"""Put result directories back together: the shards of one night, or several nights, arches
or kernels, into one directory with one KCIDB file, one JUnit file and one HTML report.

A scenario run found in several directories (same node id: same scenario, same target) is
one run, as the same object submitted twice is one object in KCIDB (kcidb_io's dedup merges
them field by field, picking either side); memhp picks the later run, so that a re-run shard
replaces the one it repeats.
"""

from __future__ import annotations

import dataclasses
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from harness import report
from harness.errors import UsageError
from harness.report.results import (
    RECORDS,
    Checkout,
    Result,
    RunRecord,
    load,
    load_checkout,
    load_runs,
    save,
    save_checkout,
    save_runs,
)


def merge(dirs: list[Path], out: Path) -> list[Result]:
    """Merge ``dirs`` into ``out`` (records, pictures, checkout, JUnit) and write the
    reports; the merged results."""
    chosen: dict[str, tuple[Result, Path]] = {}
    for d in dirs:
        if not (d / RECORDS).is_dir():
            raise UsageError(
                f"{d} is not a memhp results directory (no {RECORDS}/): give "
                "the directories of --report / --memhp-results"
            )
        for r in load(d):
            if r.nodeid not in chosen or r.start_time >= chosen[r.nodeid][0].start_time:
                chosen[r.nodeid] = (r, d)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / RECORDS, ignore_errors=True)
    for r, src in chosen.values():
        for kept in [m.png for m in r.maps] + ([r.repro] if r.repro else []):
            (out / kept).parent.mkdir(parents=True, exist_ok=True)
            if (src / kept).is_file() and src.resolve() != out.resolve():
                shutil.copy2(src / kept, out / kept)  # a reproducer stays executable
        save(r, out)
    checkout = _common_checkout(dirs)
    if checkout is not None:
        save_checkout(checkout, out)
    save_runs(_runs(dirs), out)
    merge_junit([d / "junit.xml" for d in dirs], out / "junit.xml")
    report.write(out)
    return load(out)


def _runs(dirs: list[Path]) -> list[RunRecord]:
    """Every source's run records, each labelled with its directory (a merge of merges
    keeps the labels it had)."""
    return [dataclasses.replace(r, label=r.label or d.name) for d in dirs for r in load_runs(d)]


def _common_checkout(dirs: list[Path]) -> Checkout | None:
    """The checkout all directories tested, if they agree on one."""
    found = {load_checkout(d) for d in dirs}
    return found.pop() if len(found) == 1 else None


def merge_junit(files: list[Path], dest: Path) -> None:
    """One <testsuites> holding every source's <testsuite>s, named after its directory."""
    top = ET.Element("testsuites")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for f in files:
        if not f.is_file():
            continue
        root = ET.parse(f).getroot()
        for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
            suite.set("name", f"{suite.get('name', 'pytest')} ({f.parent.name})")
            for key in totals:
                totals[key] += int(suite.get(key, 0))
            top.append(suite)
    for key, value in totals.items():
        top.set(key, str(value))
    ET.ElementTree(top).write(dest, encoding="utf-8", xml_declaration=True)
