"""Reports of a results directory: what every scenario run left there, as KCIDB, HTML and
pictures (JUnit comes from pytest itself, with memhp's suite properties).

    results.py   the one result model (PASS / FAIL / ERROR / MISS / SKIP) and its records
    kcidb.py     KCIDB v5.3 JSON
    html.py      report.html: matrix, failures with expected vs seen, dmesg, console
    pagemap.py   page-flag snapshots of the plugged ranges, step by step
    picture.py   those snapshots drawn (one tile per block, one pixel per page)
    png.py       the PNG encoder
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from harness.report.html import html_report
from harness.report.kcidb import BuildOutcome, kcidb
from harness.report.results import RECORDS, load, load_checkout, load_runs


def write(results_dir: Path, builds: Sequence[BuildOutcome] = ()) -> tuple[Path, Path]:
    """kcidb.json and report.html for everything in ``results_dir``: its results, and its
    run records (a run a signal cut short says so in both)."""
    (results_dir / RECORDS).mkdir(parents=True, exist_ok=True)  # an empty shard: none
    results = load(results_dir)
    checkout = load_checkout(results_dir)
    runs = load_runs(results_dir)
    kc = results_dir / "kcidb.json"
    kc.write_text(json.dumps(kcidb(results, checkout, builds, runs=runs), indent=1))
    page = results_dir / "report.html"
    page.write_text(html_report(results, checkout, builds, runs=runs))
    return kc, page
