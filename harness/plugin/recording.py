"""What --memhp-results keeps: one result record per scenario run, its page-flag picture, the
run record (and a MISS record for each selected scenario an interruption kept from running),
and the JUnit suite properties (kernel, arch, QEMU, the run's completeness)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.plugin import stash
from harness.preflight import Target
from harness.report import repro
from harness.report import write as write_reports
from harness.report.pagemap import BlockView, Snapshot
from harness.report.picture import render_png
from harness.report.results import Result, RunRecord, StepMap, load, save, save_runs
from harness.verdict import Status

if TYPE_CHECKING:
    from harness.hotplug.vm import HotplugVM

NO_CALLSPEC = type("NoCallspec", (), {"params": {}})()


class PageFlagRecorder:
    """A step observer (HotplugVM.observers): the page-flag map of the step's range after
    each step. Attached only for --memhp-results: each map reads 8 bytes per page."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []

    def __call__(self, vm: HotplugVM, step: str, addr: int, size: int) -> None:
        if addr < 0:
            return
        layout = vm.memory()
        page = vm.guest.page_size()
        by_phys = {b.phys_index: b for b in layout.covering(addr, size)}
        views = []
        for phys in range(addr // layout.block_size, (addr + size) // layout.block_size):
            b = by_phys.get(phys)
            views.append(
                BlockView(b.index, b.state, b.zone) if b else BlockView(None, "absent", None)
            )
        pfns = range(addr // page, (addr + size) // page)
        values = vm.guest.kpageflags(pfns)
        self.snapshots.append(
            Snapshot.of(step, pfns.start, layout.block_size // page, views, values)
        )


def record(
    item: pytest.Item,
    call: pytest.CallInfo[None],
    report: pytest.TestReport,
    status: Status,
    results_dir: Path,
) -> None:
    """Write (or update) this scenario's result record; pictures when the call ends."""
    exc = call.excinfo.value if call.excinfo else None
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
    qemu = item.config.stash[stash.PLAN].qemus.get((target.arch.name, target.qemu))
    result = Result(
        nodeid=item.nodeid,
        scenario=scenario,
        arch=target.arch.name,
        kernel=target.kernel,
        qemu_spec=target.qemu,
        qemu_build=qemu.identity if qemu else "",
        status=status,
        phase=call.when,
        start_time=previous.start_time if previous else call.start,
        duration=previous.duration if previous and call.when == "teardown" else call.duration,
        release=v.facts.release if v else "",
        qemu=v.machine.qemu_version if v else (qemu.version if qemu else ""),
        accel=v.machine.accel.name if v else "",
        message=message(exc, report),
        known=getattr(report, "memhp_known", "") or "",
        log_excerpt=log_excerpt(exc, report),
        maps=previous.maps if previous else [],
        measurements=measured(item),
    )
    recorder = item.stash.get(stash.RECORDER, None)
    if call.when == "call" and recorder is not None and recorder.snapshots:
        title = f"{result.scenario} {target.id}"
        result.maps = [draw(recorder.snapshots, results_dir, result.slug, title)]
    if call.when == "call" and status is Status.FAIL and v is not None:
        steps = v.machine.transcript.since(item.stash.get(stash.TRANSCRIPT_MARK, 0))
        script = repro.write(results_dir, result, v.machine.config, v.machine.accel, steps)
        result.repro = str(script.relative_to(results_dir))
    item.stash[stash.RESULT] = result
    save(result, results_dir)


def junit_measurements(config: pytest.Config, nodeid: str, numbers: dict[str, object]) -> None:
    """A test's ``measure`` numbers as JUnit suite properties ``memhp_measurement`` = "NODEID
    NAME=JSON": xunit2 has no testcase properties (pytest's record_property writes them
    anyway, and warns, and xunit2 readers drop them)."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in numbers.items():
        xml.add_global_property("memhp_measurement", f"{nodeid} {name}={json.dumps(value)}")


def measured(item: pytest.Item) -> dict[str, object]:
    """What the scenario measured (the ``measure`` fixture), as recorded so far."""
    kept: dict[str, object] = item.stash.get(stash.MEASUREMENTS, {})
    return dict(kept)


def draw(snapshots: list[Snapshot], results_dir: Path, slug: str, title: str) -> StepMap:
    """The test's page-flag picture as a PNG (``title`` on top), and what each step saw per
    block."""
    png = Path("maps") / f"{slug}.png"
    (results_dir / "maps").mkdir(parents=True, exist_ok=True)
    (results_dir / png).write_bytes(render_png(snapshots, title))
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
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    # "after 20 cycles:" says nothing alone: a heading takes its first finding along
    first = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines or [""])[0]
    return f"{type(exc).__name__}: {first}"


def log_excerpt(exc: BaseException | None, report: pytest.TestReport) -> str:
    """Why it failed, in full: the check's expected-vs-seen text, dmesg, the console, and
    for a bug in memhp its traceback."""
    if exc is None or (report.skipped and not getattr(report, "memhp_known", "")):
        return ""
    parts = [str(exc)]
    if any(title.startswith("memhp: a bug in memhp") for title, _ in report.sections):
        parts.append(f"--- traceback ---\n{report.longreprtext}")
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


# -- the run as a whole ---------------------------------------------------------------------


def finish_results(
    config: pytest.Config, results_dir: Path, run: RunRecord, never_ran: list[str]
) -> None:
    """On the controller, once: MISS records for the scenarios a signal kept from running,
    the run record, the JUnit properties, KCIDB and HTML."""
    if run.interrupted_by:
        for nodeid in never_ran:
            missed = _never_ran(config, nodeid, run)
            if missed is not None:
                save(missed, results_dir)
    save_runs([run], results_dir)
    results = load(results_dir)
    repeated = config.stash.get(stash.REPEATS, {})
    for r in (r for r in results if r.nodeid in repeated):
        r.repeats = repeated[r.nodeid]
        save(r, results_dir)
    _junit(config, results, run, never_ran)
    kc, page = write_reports(results_dir)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"memhp: {len(results)} results; KCIDB {kc}, report {page}")


def _never_ran(config: pytest.Config, nodeid: str, run: RunRecord) -> Result | None:
    """The MISS record of a selected scenario that never started (None: not a scenario)."""
    targets = {t.id: t for t in config.stash[stash.PLAN].targets}
    scenario, target_id = scenario_name(nodeid, list(targets))
    target = targets.get(target_id)
    if target is None:
        return None
    return Result(
        nodeid=nodeid,
        scenario=scenario,
        arch=target.arch.name,
        kernel=target.kernel,
        qemu_spec=target.qemu,
        status=Status.MISS,
        phase="not run",
        start_time=time.time(),
        duration=0.0,
        message=f"no verdict: it never finished, the run was {run.describe()}",
    )


def _junit(config: pytest.Config, results: list[Result], run: RunRecord, never: list[str]) -> None:
    """Suite properties (kernel, arch, QEMU, the run), and an error entry for each test a
    signal kept from running: a CI system that reads only JUnit must see the gap."""
    from _pytest.junitxml import xml_key  # LogXML: where record_testsuite_property writes

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    seen = sorted(
        {(r.arch, r.kernel, r.release, r.qemu_spec, r.qemu, r.qemu_build, r.accel) for r in results}
    )
    for arch, kernel, release, spec, qemu, build, accel in seen:
        xml.add_global_property(
            "memhp_target", f"{arch} {kernel} ({release or 'not booted'}) on QEMU {spec}"
        )
        xml.add_global_property("memhp_qemu", f"{spec}: {qemu} {accel}, {build}")
    xml.add_global_property("memhp_run", run.describe())
    for r in results:  # xunit2 has no testcase properties: the suite carries the reruns
        if r.repeats:
            xml.add_global_property("memhp_repeat", f"{r.nodeid}: {r.repeat_summary()}")
    xml.add_global_property("memhp_generated", time.strftime("%Y-%m-%dT%H:%M:%S"))
    if not run.interrupted_by:
        return
    for nodeid in never:
        path, _, name = nodeid.partition("::")
        xml.pytest_runtest_logreport(
            pytest.TestReport(
                nodeid,
                (path, None, name),
                {},
                "failed",
                f"no verdict: it never finished, the run was {run.describe()}",
                "setup",
            )
        )
