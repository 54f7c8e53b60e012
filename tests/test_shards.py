"""Sharding, merging and comparing: the split is a partition that keeps guest-sharing
scenarios together (unit tests on real collected items), and on real guests the same
selection run whole and as 3 shards in separate processes merges back to the same verdicts;
a run with a wrong expectation compares as a regression that names the scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.plugin.shards import Shard
from harness.report.compare import compare
from harness.report.merge import merge
from harness.report.results import Result, load
from harness.verdict import Status

ROOT = Path(__file__).resolve().parent.parent
SELECT = (
    "test_dimm_hot_add or test_dimm_online_movable or test_dimm_offline_again or "
    "test_dimm_default_online_policy or test_nvdimm_unplug or test_virtio_mem_device_del"
)


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def collected(*args: str) -> list[str]:
    run = pytest_run("testcases", "--collect-only", "-q", "--memhp-arch", "x86_64", *args)
    return [ln for ln in run.stdout.splitlines() if "::" in ln]


def test_shards_partition_the_selection_and_keep_shared_guests_together() -> None:
    everything = collected()
    parts = [collected("--memhp-shard", f"{k}/3") for k in (1, 2, 3)]

    assert sorted(n for p in parts for n in p) == sorted(everything)  # each once
    assert all(parts), [len(p) for p in parts]
    assert parts == [collected("--memhp-shard", f"{k}/3") for k in (1, 2, 3)]  # stable
    # Scenarios on the default shared guest of a target never straddle two shards.
    shared = {"test_dimm_online_movable", "test_dimm_offline_again", "test_dimm_remove"}
    for kernel in ("debian:6.1", "debian:6.12", "debian:7.2"):
        owners = {
            k
            for k, p in enumerate(parts)
            for n in p
            if f"x86_64-{kernel}]" in n and n.split("::")[1].split("[")[0] in shared
        }
        assert len(owners) == 1, (kernel, owners)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b"])
def test_bad_shard_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="K/N"):
        Shard.parse(text)


def _result(scenario: str, status: Status, start: float = 0.0) -> Result:
    return Result(
        nodeid=f"t.py::{scenario}[x86_64-debian:6.12]",
        scenario=scenario,
        arch="x86_64",
        kernel="debian:6.12",
        status=status,
        phase="call",
        start_time=start,
        duration=1.0,
    )


def test_compare_sorts_flips_into_regressions_fixes_and_the_rest() -> None:
    base = [
        _result("a", Status.PASS),
        _result("b", Status.FAIL),
        _result("c", Status.PASS),
        _result("d", Status.PASS),
        _result("gone", Status.PASS),
    ]
    new = [
        _result("a", Status.FAIL),
        _result("b", Status.PASS),
        _result("c", Status.ERROR),
        _result("d", Status.PASS),
        _result("fresh", Status.PASS),
    ]

    c = compare(base, new)

    assert [f.key[3] for f in c.regressions] == ["a"]
    assert [f.key[3] for f in c.fixes] == ["b"]
    assert [f.key[3] for f in c.infrastructure] == ["c"]  # not a regression
    assert [f.key[3] for f in c.new] == ["fresh"] and [f.key[3] for f in c.vanished] == ["gone"]
    assert c.unchanged == 1 and "1 regression(s)" in c.text()


def test_whole_and_sharded_runs_merge_to_the_same_verdicts(tmp_path: Path) -> None:
    common = [
        "testcases",
        "-q",
        "-k",
        SELECT,
        "--memhp-arch",
        "x86_64",
        "--memhp-kernel",
        "debian:6.12",
    ]
    whole = tmp_path / "whole"
    run = pytest_run(*common, "--memhp-results", str(whole), "--junitxml", str(whole / "junit.xml"))
    assert run.returncode == 0, run.stdout[-3000:]
    shard_dirs = []
    for k in (1, 2, 3):
        d = tmp_path / f"shard{k}"
        run = pytest_run(
            *common,
            "--memhp-shard",
            f"{k}/3",
            "--memhp-durations-from",
            str(whole),
            "--memhp-results",
            str(d),
            "--junitxml",
            str(d / "junit.xml"),
        )
        assert run.returncode in (0, 5), run.stdout[-3000:]  # 5: a shard may be empty
        shard_dirs.append(d)

    merged = merge(shard_dirs, tmp_path / "merged")

    def verdicts(results: list[Result]) -> set[tuple[str, str, str, str]]:
        return {(r.scenario, r.arch, r.kernel, r.status.value) for r in results}

    differ = verdicts(merged) ^ verdicts(load(whole))
    assert not differ, [
        (r.scenario, r.status.value, r.message, r.log_excerpt[-1500:])
        for r in merged + load(whole)
        if (r.scenario, r.arch, r.kernel, r.status.value) in differ
    ]
    doc = json.loads((tmp_path / "merged" / "kcidb.json").read_text())
    kcidb_io = pytest.importorskip("kcidb_io")
    kcidb_io.schema.V5_3.validate_exactly(doc)
    junit = ET.parse(tmp_path / "merged" / "junit.xml").getroot()
    assert int(junit.get("tests", 0)) == len(merged)

    # A run whose expectation is wrong: compare names the scenario and exits 1.
    wrong = tmp_path / "wrong"
    pytest_run(
        "testcases",
        "-q",
        "-k",
        "test_dimm_default_online_policy",
        "--memhp-arch",
        "x86_64",
        "--memhp-kernel",
        "debian:6.12",
        "--memhp-expect",
        "online_policy=offline",
        "--memhp-results",
        str(wrong),
    )
    same = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "report",
            "compare",
            str(whole),
            str(tmp_path / "merged"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    flipped = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "report",
            "compare",
            str(whole),
            str(wrong),
            "--html",
            str(tmp_path / "cmp.html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert same.returncode == 0, same.stdout
    assert flipped.returncode == 1, flipped.stdout
    regressions = flipped.stdout.split("regressions", 1)[1].split("\n\n", 1)[0]
    assert "test_dimm_default_online_policy: PASS -> FAIL" in regressions, flipped.stdout
    assert "test_dimm_default_online_policy" in (tmp_path / "cmp.html").read_text()


def test_compare_names_a_regression_only_one_qemu_shows() -> None:
    def r(qemu: str, status: Status) -> Result:
        return Result(
            nodeid=f"testcases/test_x.py::test_a[x86_64-debian:7.2-{qemu}]",
            scenario="test_a",
            arch="x86_64",
            kernel="debian:7.2",
            qemu_spec=qemu,
            status=status,
            phase="call",
            start_time=0.0,
            duration=1.0,
        )

    base = [r("host", Status.PASS), r("debian:10.0", Status.PASS)]
    c = compare(base, [r("host", Status.PASS), r("debian:10.0", Status.FAIL)])

    (flip,) = c.regressions
    assert flip.only_on == "debian:10.0" and "(only on QEMU debian:10.0)" in flip.line()
    both = compare(base, [r("host", Status.FAIL), r("debian:10.0", Status.FAIL)])
    assert [f.only_on for f in both.regressions] == ["", ""]
