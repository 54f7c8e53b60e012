"""The three workflows on a real kernel git repository (Debian's linux-source-6.12 plus five
commits, one a genuine mm regression: see kernel_repo.py): bisect names the culprit, series
verify reports it at the right patch, and a series that does not apply is reported cleanly.
Kernel builds: nightly (``pytest -m kbuild``), like test_kernel_build.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from kernel_repo import BAD_TAG, GOOD_TAG, REGRESSION_SUBJECT, SCENARIO, regression_repo

from harness.workflows.gittree import output as git

pytestmark = pytest.mark.kbuild

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def repo(kernel_tree: Path) -> Path:
    return regression_repo(kernel_tree)


def memhp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def untouched(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain"),
        git(repo, "branch", "--show-current"),
    )


def test_bisect_names_the_regression_and_leaves_the_tree_alone(repo: Path, tmp_path: Path) -> None:
    before = untouched(repo)

    run = memhp(
        "bisect",
        "--tree",
        str(repo),
        "--good",
        GOOD_TAG,
        "--bad",
        BAD_TAG,
        "-k",
        SCENARIO,
        "--repeat",
        "2",
        "--out",
        str(tmp_path),
    )

    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    culprit = git(repo, "log", "-1", "--format=%h", f"{BAD_TAG}~2")
    assert f"first bad commit: {culprit[:12]}" in run.stdout
    assert REGRESSION_SUBJECT in run.stdout and "confirmed:" in run.stdout
    assert untouched(repo) == before


def test_series_verify_reports_the_regression_at_its_patch(repo: Path, tmp_path: Path) -> None:
    patches = tmp_path / "patches"
    git(
        repo,
        "format-patch",
        "-q",
        "--thread",
        "--cover-letter",
        f"--base={GOOD_TAG}",
        "-o",
        str(patches),
        f"{GOOD_TAG}..{BAD_TAG}",
    )
    mbox = tmp_path / "series.mbox"
    mbox.write_bytes(b"".join(p.read_bytes() for p in sorted(patches.glob("*.patch"))))
    out = tmp_path / "out"

    run = memhp(
        "series",
        "verify",
        "--tree",
        str(repo),
        "--mbox",
        str(mbox),
        "--each-commit",
        "-k",
        SCENARIO,
        "--out",
        str(out),
    )

    assert run.returncode == 1, run.stdout + run.stderr[-4000:]
    rows = [ln for ln in run.stdout.splitlines() if ln.lstrip().startswith("[")]
    assert len(rows) == 5
    verdicts = ["FAIL" in r.split("applied", 1)[1] for r in rows]
    assert verdicts == [False, False, True, True, True], run.stdout
    assert REGRESSION_SUBJECT[:40] in rows[2]
    # Reports of the culprit patch: KCIDB validates, JUnit parses, the map exists.
    culprit = out / "patch-03-x86_64"
    doc = json.loads((culprit / "kcidb.json").read_text())
    kcidb_io = pytest.importorskip("kcidb_io", reason="the dev extra validates KCIDB")
    kcidb_io.schema.V5_3.validate_exactly(doc)
    assert doc["checkouts"][0]["patchset_hash"] and doc["checkouts"][0]["message_id"]
    assert [t["status"] for t in doc["tests"]] == ["FAIL"]
    suite = ET.parse(culprit / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    props = {p.get("name") for p in suite.iter("property")}
    assert {"memhp_target", "memhp_qemu"} <= props
    pngs = list((culprit / "maps").glob("*.png"))
    assert pngs and pngs[0].read_bytes().startswith(b"\x89PNG")
    assert "RESERVED" in (culprit / "report.html").read_text()


def test_series_that_does_not_apply_names_the_patch(repo: Path, tmp_path: Path) -> None:
    before = untouched(repo)
    patch = Path(git(repo, "format-patch", "-1", "-o", str(tmp_path), f"{BAD_TAG}~2"))
    # The preimage line no longer matches anything: neither plain nor 3-way apply can work.
    patch.write_text(
        patch.read_text().replace("-\t\tpfn += (1UL << order);", "-\t\tpfn += (1UL << order) + 1;")
    )

    run = memhp(
        "series",
        "verify",
        "--tree",
        str(repo),
        "--mbox",
        str(patch),
        "--base",
        GOOD_TAG,
        "--out",
        str(tmp_path / "out"),
    )

    assert run.returncode == 1, run.stdout + run.stderr
    assert "DID NOT APPLY" in run.stdout and "mm/memory_hotplug.c" in run.stdout
    assert untouched(repo) == before
