"""Result records for --memhp-results: one per scenario run, with its page-flag picture, and
the JUnit suite properties (kernel, arch, QEMU) read back from them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.plugin import stash
from harness.preflight import Target
from harness.report.pagemap import Snapshot
from harness.report.picture import render_png
from harness.report.results import Result, Status, StepMap, classify, save

NO_CALLSPEC = type("NoCallspec", (), {"params": {}})()


def record(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, results_dir: Path
) -> None:
    """Write (or update) this scenario's result record; pictures when the call ends."""
    exc = call.excinfo.value if call.excinfo else None
    status = classify(exc, call.when, report.skipped)
    previous = item.stash.get(stash.RESULT, None)
    if call.when == "setup" and status is Status.PASS:
        return  # the call phase decides
    if call.when == "teardown" and (
        status is Status.PASS or (previous and previous.status is not Status.PASS)
    ):
        return  # a teardown problem matters only when the scenario itself passed
    target: Target = item.callspec.params["memhp_target"]  # type: ignore[attr-defined]
    scenario, _ = scenario_name(item.nodeid, [target.id])
    v = item.stash.get(stash.VM, None)
    result = Result(
        nodeid=item.nodeid,
        scenario=scenario,
        arch=target.arch.name,
        kernel=target.kernel,
        status=status,
        phase=call.when,
        start_time=previous.start_time if previous else call.start,
        duration=previous.duration if previous and call.when == "teardown" else call.duration,
        release=v.facts.release if v else "",
        qemu=v.machine.qemu_version if v else "",
        accel=v.machine.accel.name if v else "",
        message=message(exc, report),
        log_excerpt=log_excerpt(exc, report),
        maps=previous.maps if previous else [],
    )
    if call.when == "call" and v is not None and v.snapshots:
        result.maps = [draw(v.snapshots, results_dir, result.slug)]
    item.stash[stash.RESULT] = result
    save(result, results_dir)


def draw(snapshots: list[Snapshot], results_dir: Path, slug: str) -> StepMap:
    """The test's page-flag picture as a PNG, and what each step saw per block."""
    png = Path("maps") / f"{slug}.png"
    (results_dir / "maps").mkdir(parents=True, exist_ok=True)
    (results_dir / png).write_bytes(render_png(snapshots))
    return StepMap(
        str(png),
        [
            {
                "step": s.step,
                "blocks": [
                    {"index": b.index, "state": b.state, "zone": b.zone, "pages": s.histogram(i)}
                    for i, b in enumerate(s.blocks)
                ],
            }
            for s in snapshots
        ],
    )


def message(exc: BaseException | None, report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if exc is None:
        return ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def log_excerpt(exc: BaseException | None, report: pytest.TestReport) -> str:
    """Why it failed, in full: the check's expected-vs-seen text, dmesg, the console."""
    if exc is None or report.skipped:
        return ""
    parts = [str(exc)]
    parts += [
        f"--- {title} ---\n{text}"
        for title, text in report.sections
        if title.startswith(("memhp:", "Captured stdout call")) or "guest dmesg" in title
    ]
    return "\n".join(parts)


def scenario_name(nodeid: str, target_ids: list[str]) -> tuple[str, str]:
    """(scenario, target id) of a node id: test_x[x86_64-debian:6.12-1G] -> test_x[1G]."""
    name, _, params = nodeid.rpartition("::")[2].partition("[")
    ids = sorted(target_ids, key=len, reverse=True)
    target = next((i for i in ids if params.startswith(i)), params.rstrip("]"))
    extra = params[len(target) :].strip("-]")  # other parameters stay with the name
    return (f"{name}[{extra}]" if extra else name), target


def junit_properties(config: pytest.Config, results: list[Result]) -> None:
    from _pytest.junitxml import xml_key  # LogXML: where record_testsuite_property writes

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    seen = sorted({(r.arch, r.kernel, r.release, r.qemu, r.accel) for r in results if r.qemu})
    for arch, kernel, release, qemu, accel in seen:
        xml.add_global_property("memhp_target", f"{arch} {kernel} ({release})")
        xml.add_global_property("memhp_qemu", f"{qemu} {accel}")
    xml.add_global_property("memhp_generated", time.strftime("%Y-%m-%dT%H:%M:%S"))
