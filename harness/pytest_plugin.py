"""pytest plugin: options, the ``vm`` fixture, guest reuse, dmesg watch, infra vs kernel.

Tests that take ``vm`` run once per target (arch x kernel). Guests are shared between tests
with the same boot configuration; a test that leaves something behind (a DIMM it could not
remove, a dead VM) makes the pool boot a fresh guest for the next one. Tests marked
``@pytest.mark.memhp(fresh=True)`` always get a guest of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import machine as machine_mod
from harness import preflight
from harness.accel import choose_accel, tcg_artifact
from harness.arch import Arch
from harness.dmesg import find_splats, format_splats
from harness.errors import GuestPanic, InfrastructureError, KernelFailure, MemhpError, UsageError
from harness.expectations import kernel_supports, parse_overrides
from harness.images import Image
from harness.images import build as build_image
from harness.kconfig import load as load_config
from harness.lockfile import Lock
from harness.lockfile import load as load_lock
from harness.machine import ColdPlug, Machine, MachineConfig
from harness.pagemap import Snapshot, render_png
from harness.preflight import Plan, Target
from harness.progress import progress
from harness.results import Result, Status, StepMap, classify, save
from harness.signals import interrupt_on_termination
from harness.vm import VM

DEFAULT_ARCHES = preflight.DEFAULT_ARCHES


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("memhp", "memory hotplug on QEMU guests")
    g.addoption("--memhp-kernel", action="append", metavar="SPEC",
                help="kernel to test: debian:X.Y[/flavour] or PATH[,MODULES_DIR]; repeatable "
                     "(default: the arch's Debian matrix, e.g. debian:6.1 debian:6.12 debian:7.2)")
    g.addoption("--memhp-arch", action="append", metavar="ARCH",
                help="guest arch: x86_64 or ppc64le; repeatable "
                     f"(default: {' '.join(DEFAULT_ARCHES)})")
    g.addoption("--memhp-accel", metavar="auto|kvm|tcg",
                help="accelerator (default: $MEMHP_ACCEL or auto: KVM only where it works)")
    g.addoption("--memhp-expect", action="append", default=[], metavar="NAME=VALUE",
                help="override an expectation, e.g. online_policy=online_movable")
    g.addoption("--memhp-lock", type=Path, metavar="FILE",
                help="build the images from the packages FILE pins (memhp image lock)")
    g.addoption("--memhp-results", type=Path, metavar="DIR",
                help="write one result record per scenario, page-flag maps (PNG), "
                     "DIR/kcidb.json (KCIDB v5.3) and DIR/report.html")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "memhp(cmdline=(...), extra_cmdline=(...), fresh=False, memory=None, "
        "coldplug=()): guest boot configuration; cmdline replaces the arch's scenario "
        "command line (None: the kernel's defaults), extra_cmdline adds to it, fresh=True "
        "gives the test its own guest, coldplug lists harness.coldplug device specs")
    config.addinivalue_line(
        "markers", "dmesg_allow(*regex): kernel log lines the test provokes on purpose")
    config.addinivalue_line(
        "markers", "needs_kernel(*features): kernel features the test needs (see "
        "harness.expectations.KERNEL_FEATURES); checked against the image's config before "
        "booting, a kernel without one skips naming the option")
    config.addinivalue_line(
        "markers", "needs(*props): guest properties the test needs; skipped before booting "
        "where the arch profile lacks one (Arch.lacks and tcg_lacks say why)")
    interrupt_on_termination()
    config.stash[_PLAN] = _plan(config)
    if not hasattr(config, "workerinput"):  # xdist workers' output is not shown anyway
        _route_progress(config)


def _plan(config: pytest.Config) -> Plan:
    """The validated run: checked once, on the controller, before any guest boots (a bad
    input is one line and exit status 2); xdist workers take the controller's word."""
    arches = config.getoption("memhp_arch")
    kernels = config.getoption("memhp_kernel")
    expects = config.getoption("memhp_expect") or []
    lock_path = config.getoption("memhp_lock")
    try:
        if hasattr(config, "workerinput") or not _runs_scenarios(config):
            return Plan(preflight.targets(arches, kernels), parse_overrides(expects),
                        load_lock(lock_path) if lock_path else None)
        return preflight.check(arches, kernels, accel=config.getoption("memhp_accel"),
                               expects=expects, lock=lock_path)
    except UsageError as exc:
        pytest.exit(f"memhp: {exc}", returncode=2)


def _runs_scenarios(config: pytest.Config) -> bool:
    """Whether this session may boot guests: not for --collect-only or the unit tests alone
    (nothing in the arguments under testcases/)."""
    if config.getoption("collectonly"):
        return False
    args = [a for a in config.args if not a.startswith("-")]
    return not args or any("testcases" in Path(a).resolve().as_posix() for a in args)


def _route_progress(config: pytest.Config) -> None:
    """Progress lines go to the terminal at once, not into a captured test section."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        return

    def sink(line: str) -> None:
        with capman.global_and_fixture_disabled():
            tr.write_line(line)

    progress.sink = sink


def targets(config: pytest.Config) -> list[Target]:
    return list(config.stash[_PLAN].targets)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "memhp_target" in metafunc.fixturenames:
        ts = targets(metafunc.config)
        metafunc.parametrize("memhp_target", ts, ids=[t.id for t in ts], scope="session")


# -- the pool of booted guests -------------------------------------------------------------


@dataclass(frozen=True)
class Boot:
    cmdline: tuple[str, ...]
    memory: int | None
    coldplug: tuple[ColdPlug, ...] = ()

    @classmethod
    def of(cls, item: pytest.Item, arch: Arch) -> tuple[Boot, bool]:
        """The test's boot configuration: its memhp marker, else the arch's scenario one."""
        marker = item.get_closest_marker("memhp")
        kw = marker.kwargs if marker else {}
        cmdline = tuple(kw.get("cmdline", arch.scenario_cmdline) or ()) + tuple(
            kw.get("extra_cmdline", ()))
        boot = cls(cmdline, kw.get("memory"), tuple(kw.get("coldplug", ())))
        return boot, bool(kw.get("fresh", False))


@dataclass
class Pool:
    config: pytest.Config
    shared: dict[tuple[Target, Boot], Machine] = field(default_factory=dict)
    broken: dict[tuple[Target, Boot], MemhpError] = field(default_factory=dict)
    images: dict[Target, Image] = field(default_factory=dict)
    image_errors: dict[Target, MemhpError] = field(default_factory=dict)

    @property
    def lock(self) -> Lock | None:
        return self.config.stash[_PLAN].lock

    def image(self, target: Target) -> Image:
        """The target's image, built once per session; a failure is remembered, so every
        scenario of the target reports it at once instead of trying again."""
        if target in self.image_errors:
            raise self.image_errors[target]
        if target not in self.images:
            pinned = self.lock.pinned(target.arch.name, target.kernel) if self.lock else None
            try:
                self.images[target] = build_image(target.kernel, target.arch, pinned=pinned)
            except MemhpError as exc:
                self.image_errors[target] = exc
                raise
        return self.images[target]

    def acquire(self, target: Target, boot: Boot, fresh: bool) -> Machine:
        key = (target, boot)
        if key in self.broken:  # one boot failure per configuration, not one per test
            raise self.broken[key]
        if not fresh and key in self.shared and self.shared[key].alive():
            return self.shared[key]
        try:
            machine = self._boot_retrying_tcg_artifacts(target, boot)
        except MemhpError as exc:
            self.broken[key] = exc
            raise
        if not fresh:
            self.shared[key] = machine
        return machine

    def _boot_retrying_tcg_artifacts(self, target: Target, boot: Boot) -> Machine:
        """Boot; retry once only a failure the harness names as an artifact of QEMU's
        emulation (harness.accel.tcg_artifact), and say so. Any other boot failure stands:
        a kernel that fails to boot half the time must not pass."""
        try:
            return self._boot(target, boot)
        except (InfrastructureError, KernelFailure) as first:
            artifact = tcg_artifact(first)
            if artifact is None:
                raise
            progress.note(f"{target.id}: boot failed with a TCG artifact ({artifact}); "
                          "booting once more")
            return self._boot(target, boot)

    def _boot(self, target: Target, boot: Boot) -> Machine:
        accel = choose_accel(target.arch, self.config.getoption("memhp_accel"))
        cfg = MachineConfig(arch=target.arch, image=self.image(target), cmdline=boot.cmdline,
                            accel=accel, coldplug=boot.coldplug)
        if boot.memory:
            cfg = dataclasses.replace(cfg, memory=boot.memory)
        machine = Machine(cfg)
        machine.start()
        return machine

    def release(self, machine: Machine, reusable: bool) -> None:
        if reusable and machine.alive() and machine in self.shared.values():
            return
        for key, m in list(self.shared.items()):
            if m is machine:
                del self.shared[key]
        machine.shutdown()

    def close(self) -> None:
        for machine in self.shared.values():
            machine.shutdown()
        self.shared.clear()


@pytest.fixture(scope="session")
def memhp_pool(pytestconfig: pytest.Config) -> Iterator[Pool]:
    machine_mod.sweep_stale_dirs()  # left by a harness that was SIGKILLed
    pool = Pool(pytestconfig)
    atexit.register(pool.close)  # also on an interrupted session
    yield pool
    pool.close()


@pytest.fixture
def vm(request: pytest.FixtureRequest, memhp_target: Target, memhp_pool: Pool) -> Iterator[VM]:
    """A booted guest for this test's target, shared with compatible tests."""
    arch = memhp_target.arch
    accel = choose_accel(arch, request.config.getoption("memhp_accel")).name
    # The broadest missing piece is the one to report: what the machine lacks for the whole
    # module, then a kernel without the feature, then what the test itself needs.
    own = [m for m in request.node.own_markers if m.name == "needs"]
    _skip_if_lacking(arch, accel, [m for m in request.node.iter_markers("needs")
                                   if m not in own])
    config = load_config(memhp_pool.image(memhp_target).config)
    for feature in (f for m in request.node.iter_markers("needs_kernel") for f in m.args):
        supported = kernel_supports(feature, config, arch)
        if not supported.value:
            pytest.skip(f"{memhp_target.kernel}: no {feature} support ({supported.why})")
    _skip_if_lacking(arch, accel, own)
    boot, fresh = Boot.of(request.node, arch)
    machine = memhp_pool.acquire(memhp_target, boot, fresh)
    v = VM(machine, request.config.stash[_PLAN].overrides)
    if request.config.getoption("memhp_results"):
        v.snapshots = []
    request.node.stash[_VM] = v
    request.node.stash[_DMESG_START] = len(v.guest.dmesg())
    reusable = False
    try:
        yield v
        v.snapshots = None  # the pictures show the test's steps, not the cleanup
        reusable = not fresh and v.cleanup()
    finally:
        memhp_pool.release(machine, reusable)


def _skip_if_lacking(arch: Arch, accel: str, markers: list[pytest.Mark]) -> None:
    for prop in (p for m in markers for p in m.args):
        why = arch.lacking(prop, accel)
        if why:
            pytest.skip(f"{arch.name} ({accel}): {why}")


_VM = pytest.StashKey[VM]()
_PLAN = pytest.StashKey[Plan]()
_DMESG_START = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: fail it if the guest kernel complained meanwhile. A failed
    check on a VM that is gone meanwhile is judged again: QEMU dead or frozen is the
    infrastructure's, a panic on the console the kernel's."""
    v = item.stash.get(_VM, None)
    try:
        result = yield
    except (AssertionError, KernelFailure) as exc:
        if v is not None and not isinstance(exc, GuestPanic):
            lost = _lost_meanwhile(v.machine)
            if lost is not None:
                raise lost from exc
        _attach_dmesg(item, "guest dmesg during the test")
        raise
    except BaseException:
        _attach_dmesg(item, "guest dmesg during the test")
        raise
    if v is not None and v.machine.alive():
        lines = v.guest.dmesg()[item.stash[_DMESG_START]:]
        allow = [a for m in item.iter_markers("dmesg_allow") for a in m.args]
        splats = find_splats(lines, allow)
        if splats:
            raise AssertionError(format_splats(splats, lines))
    return result


def _lost_meanwhile(machine: Machine) -> MemhpError | None:
    """The error of a VM that no longer serves (None if it does)."""
    try:
        machine.check_alive("the check after a failed scenario", 0.0)
    except MemhpError as exc:
        return exc
    return None


def _attach_dmesg(item: pytest.Item, title: str) -> None:
    v = item.stash.get(_VM, None)
    if v is None or not v.machine.alive():
        return
    with contextlib.suppress(MemhpError):
        lines = v.guest.dmesg()[item.stash[_DMESG_START]:]
        item.add_report_section("call", title, "\n".join(lines[-80:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Infrastructure failures say so, with the console tail, and are counted apart. memhp's
    own errors are reported by their message, not a traceback: it says what happened."""
    report: pytest.TestReport = yield
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, InfrastructureError):
        report.user_properties.append(("memhp_outcome", "infrastructure"))
        report.sections.append(("memhp: infrastructure failure (not a kernel verdict)",
                                exc.details() or str(exc)))
    elif isinstance(exc, KernelFailure) and exc.console_tail:
        report.sections.append(("memhp: guest console", exc.console_tail))
    if isinstance(exc, MemhpError) and report.failed:
        report.longrepr = f"{type(exc).__name__}: {exc}"
    results_dir = item.config.getoption("memhp_results")
    if results_dir and "memhp_target" in getattr(item, "callspec", _NO_CALLSPEC).params:
        _record(item, call, report, results_dir)
    return report


_NO_CALLSPEC = type("NoCallspec", (), {"params": {}})()
_RESULT = pytest.StashKey[Result]()


def _record(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport,
            results_dir: Path) -> None:
    """Write (or update) this scenario's result record; pictures when the call ends."""
    exc = call.excinfo.value if call.excinfo else None
    status = classify(exc, call.when, report.skipped)
    previous = item.stash.get(_RESULT, None)
    if call.when == "setup" and status is Status.PASS:
        return  # the call phase decides
    if call.when == "teardown" and (status is Status.PASS or
                                    (previous and previous.status is not Status.PASS)):
        return  # a teardown problem matters only when the scenario itself passed
    target: Target = item.callspec.params["memhp_target"]  # type: ignore[attr-defined]
    scenario, _ = _scenario_name(item.nodeid, [target.id])
    v = item.stash.get(_VM, None)
    result = Result(
        nodeid=item.nodeid, scenario=scenario, arch=target.arch.name, kernel=target.kernel,
        status=status, phase=call.when,
        start_time=previous.start_time if previous else call.start,
        duration=previous.duration if previous and call.when == "teardown" else call.duration,
        release=v.facts.release if v else "", qemu=v.machine.qemu_version if v else "",
        accel=v.machine.accel.name if v else "", message=_message(exc, report),
        log_excerpt=_log_excerpt(exc, report), maps=previous.maps if previous else [])
    if call.when == "call" and v is not None and v.snapshots:
        result.maps = [_draw(v.snapshots, results_dir, result.slug)]
    item.stash[_RESULT] = result
    save(result, results_dir)


def _draw(snapshots: list[Snapshot], results_dir: Path, slug: str) -> StepMap:
    """The test's page-flag picture as a PNG, and what each step saw per block."""
    png = Path("maps") / f"{slug}.png"
    (results_dir / "maps").mkdir(parents=True, exist_ok=True)
    (results_dir / png).write_bytes(render_png(snapshots))
    return StepMap(str(png), [
        {"step": s.step, "blocks": [{"index": b.index, "state": b.state, "zone": b.zone,
                                     "pages": s.histogram(i)} for i, b in enumerate(s.blocks)]}
        for s in snapshots])


def _message(exc: BaseException | None, report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if exc is None:
        return ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def _log_excerpt(exc: BaseException | None, report: pytest.TestReport) -> str:
    """Why it failed, in full: the check's expected-vs-seen text, dmesg, the console."""
    if exc is None or report.skipped:
        return ""
    parts = [str(exc)]
    parts += [f"--- {title} ---\n{text}" for title, text in report.sections
              if title.startswith(("memhp:", "Captured stdout call"))
              or "guest dmesg" in title]
    return "\n".join(parts)


def _scenario_name(nodeid: str, target_ids: list[str]) -> tuple[str, str]:
    """(scenario, target id) of a node id: test_x[x86_64-debian:6.12-1G] -> test_x[1G]."""
    name, _, params = nodeid.rpartition("::")[2].partition("[")
    ids = sorted(target_ids, key=len, reverse=True)
    target = next((i for i in ids if params.startswith(i)), params.rstrip("]"))
    extra = params[len(target):].strip("-]")  # other parameters stay with the name
    return (f"{name}[{extra}]" if extra else name), target


# pytest's exit status 1 when every failure was the infrastructure's: no kernel verdict.
EXIT_INFRA = 3


@pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Reports for --memhp-results (on the controller only), suite properties for JUnit,
    and exit status 3 instead of 1 when no failure was the kernel's."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if session.exitstatus == pytest.ExitCode.TESTS_FAILED and tr is not None:
        failed = [r for kind in ("failed", "error") for r in tr.stats.get(kind, [])]
        if not failed and tr.stats.get("infra"):
            session.exitstatus = EXIT_INFRA
    results_dir = config.getoption("memhp_results")
    if not results_dir:
        return
    from harness import report
    from harness.results import load

    results = load(results_dir)
    _junit_properties(config, results)
    kc, page = report.write(results_dir)
    if tr is not None:
        tr.write_line(f"memhp: {len(results)} results; KCIDB {kc}, report {page}")


def _junit_properties(config: pytest.Config, results: list[Result]) -> None:
    from _pytest.junitxml import xml_key  # LogXML: where record_testsuite_property writes

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    seen = sorted({(r.arch, r.kernel, r.release, r.qemu, r.accel) for r in results if r.qemu})
    for arch, kernel, release, qemu, accel in seen:
        xml.add_global_property("memhp_target", f"{arch} {kernel} ({release})")
        xml.add_global_property("memhp_qemu", f"{qemu} {accel}")
    xml.add_global_property("memhp_generated", time.strftime("%Y-%m-%dT%H:%M:%S"))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config
                             ) -> tuple[str, str, str] | None:
    props = getattr(report, "user_properties", ())  # collection reports have none
    if report.failed and ("memhp_outcome", "infrastructure") in props:
        return "infra", "I", "INFRA"
    return None


def _infra_section(tr: Any) -> None:
    """pytest lists only its own outcomes under FAILURES; infra ones are shown here."""
    reports = tr.stats.get("infra", [])
    if not reports:
        return
    tr.section("memhp: infrastructure failures (not kernel verdicts)")
    for rep in reports:
        tr.write_line(f"{rep.nodeid} ({rep.when}):", bold=True)
        err = [ln for ln in rep.longreprtext.splitlines() if ln.startswith("E ")]
        for line in err[-3:]:
            tr.write_line(f"  {line[1:].strip()}")
        for title, text in rep.sections:
            if title.startswith("memhp:"):
                tr.write_line("  " + text.replace("\n", "\n  "))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    """Infrastructure failures in full, then a table: target x scenario -> outcome."""
    _infra_section(terminalreporter)
    rows: dict[str, dict[str, str]] = {}
    ids = [t.id for t in targets(config)]
    for kind in ("passed", "failed", "error", "skipped", "infra"):
        for rep in terminalreporter.stats.get(kind, []):
            nodeid = getattr(rep, "nodeid", "")
            if not nodeid.startswith("testcases") or (rep.when != "call" and kind == "passed"):
                continue
            name, target = _scenario_name(nodeid, ids)
            if target not in ids:
                continue  # not a scenario run on a guest
            outcome = {"error": "ERROR", "infra": "INFRA"}.get(kind, kind.upper())
            rows.setdefault(name, {})[target] = outcome
    if not rows:
        return
    cols = sorted({t for r in rows.values() for t in r})
    tr = terminalreporter
    tr.section("memhp scenarios")
    width = max(len(n) for n in rows)
    tr.write_line(" " * width + "  " + "  ".join(f"{c:<22}" for c in cols))
    for name in sorted(rows):
        cells = "  ".join(f"{rows[name].get(c, '-'):<22}" for c in cols)
        tr.write_line(f"{name:<{width}}  {cells}")
