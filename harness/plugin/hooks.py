"""pytest plugin: options, the ``vm`` fixture, guest reuse, dmesg watch, infra vs kernel.

Tests that take ``vm`` run once per target (arch x kernel). Guests are shared between tests
with the same boot configuration; a test that leaves something behind (a DIMM it could not
remove, a dead VM) makes the pool boot a fresh guest for the next one. Tests marked
``@pytest.mark.memhp(fresh=True)`` always get a guest of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import preflight
from harness.arch import Arch
from harness.errors import (
    EXIT_INFRA,
    GuestPanic,
    InfrastructureError,
    KernelFailure,
    MemhpError,
    UsageError,
)
from harness.hotplug.dmesg import find_splats, format_splats
from harness.hotplug.expectations import kernel_supports, parse_overrides
from harness.hotplug.vm import HotplugVM
from harness.images.lockfile import load as load_lock
from harness.kconfig import load as load_config
from harness.plugin import shards, stash
from harness.plugin.pool import Boot, Pool
from harness.plugin.recording import NO_CALLSPEC, junit_properties, record, scenario_name
from harness.preflight import Plan, Target
from harness.progress import progress
from harness.qemu import machine as machine_mod
from harness.qemu.accel import ACCELS, choose_accel
from harness.qemu.machine import QemuMachine
from harness.report import write as write_reports
from harness.report.results import load as load_results
from harness.signals import interrupt_on_termination

DEFAULT_ARCHES = preflight.DEFAULT_ARCHES


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("memhp", "memory hotplug on QEMU guests")
    g.addoption(
        "--memhp-kernel",
        action="append",
        metavar="SPEC",
        help="kernel to test: debian:X.Y[/flavour] or PATH[,MODULES_DIR]; repeatable "
        f"(default: each arch's Debian matrix: {preflight.matrix_help()})",
    )
    g.addoption(
        "--memhp-arch",
        action="append",
        metavar="ARCH",
        help=f"guest arch: x86_64 or ppc64le; repeatable (default: {' '.join(DEFAULT_ARCHES)})",
    )
    g.addoption(
        "--memhp-accel",
        metavar="|".join(ACCELS),
        help="accelerator (default: $MEMHP_ACCEL or auto: KVM only where it works)",
    )
    g.addoption(
        "--memhp-expect",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an expectation, e.g. online_policy=online_movable",
    )
    g.addoption(
        "--memhp-lock",
        type=Path,
        metavar="FILE",
        help="build the images from the packages FILE pins (memhp image lock)",
    )
    g.addoption(
        "--memhp-shard",
        metavar="K/N",
        help="run only the K-th of N balanced parts of the selection (CI job matrices)",
    )
    g.addoption(
        "--memhp-durations-from",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="results directories of earlier runs whose durations balance --memhp-shard",
    )
    g.addoption(
        "--memhp-results",
        type=Path,
        metavar="DIR",
        help="write one result record per scenario, page-flag maps (PNG), "
        "DIR/kcidb.json (KCIDB v5.3) and DIR/report.html",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memhp(cmdline=(...), extra_cmdline=(...), fresh=False, memory=None, "
        "coldplug=(), cold_boot=False, numa=(), reboot=False): guest boot configuration; "
        "cmdline replaces the arch's scenario command line (None: the kernel's defaults), "
        "extra_cmdline adds to it, fresh=True gives the test its own guest, coldplug lists "
        "harness.hotplug.coldplug device specs, "
        "cold_boot=True boots it instead of restoring a saved boot (a test that needs the "
        "boot itself; cold-plugged devices always boot), numa gives the boot RAM of each NUMA "
        "node (0: memoryless), reboot=True lets a guest reboot instead of ending QEMU",
    )
    config.addinivalue_line(
        "markers", "kbuild: builds a kernel from source (slow; nightly: pytest -m kbuild)"
    )
    config.addinivalue_line(
        "markers", "flavours: every Debian flavour on both arches (slow; nightly)"
    )
    config.addinivalue_line(
        "markers", "dmesg_allow(*regex): kernel log lines the test provokes on purpose"
    )
    config.addinivalue_line(
        "markers",
        "needs_kernel(*features): kernel features the test needs (see "
        "harness.expectations.KERNEL_FEATURES); checked against the image's config before "
        "booting, a kernel without one skips naming the option",
    )
    config.addinivalue_line(
        "markers",
        "needs(*props): guest properties the test needs; skipped before booting "
        "where the arch profile lacks one (Arch.lacks and tcg_lacks say why)",
    )
    interrupt_on_termination()
    # memhp's own log at DEBUG (QMP traffic) goes into the captured log; the libraries'
    # chatter does not.
    for noisy in ("paramiko", "qemu.qmp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config.stash[stash.PLAN] = _plan(config)
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
        if config.getoption("memhp_shard"):
            shards.Shard.parse(config.getoption("memhp_shard"))
        for d in config.getoption("memhp_durations_from"):
            if not d.is_dir():
                raise UsageError(f"--durations-from {d}: no such results directory")
        if hasattr(config, "workerinput") or not _runs_scenarios(config):
            return Plan(
                preflight.targets(arches, kernels),
                parse_overrides(expects),
                load_lock(lock_path) if lock_path else None,
            )
        return preflight.check(
            arches, kernels, accel=config.getoption("memhp_accel"), expects=expects, lock=lock_path
        )
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--memhp-shard: keep this runner's part, deselect the rest."""
    text = config.getoption("memhp_shard")
    if not text:
        return
    try:
        shard = shards.Shard.parse(text)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    mine = shards.split(items, shard, shards.durations(config.getoption("memhp_durations_from")))
    kept = {i.nodeid for i in mine}
    config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in kept])
    items[:] = mine


def targets(config: pytest.Config) -> list[Target]:
    return list(config.stash[stash.PLAN].targets)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "memhp_target" in metafunc.fixturenames:
        ts = targets(metafunc.config)
        metafunc.parametrize("memhp_target", ts, ids=[t.id for t in ts], scope="session")


# -- the pool of booted guests -------------------------------------------------------------


@pytest.fixture(scope="session")
def memhp_pool(pytestconfig: pytest.Config) -> Iterator[Pool]:
    machine_mod.sweep_stale_dirs()  # left by a harness that was SIGKILLed
    pool = Pool(pytestconfig.getoption("memhp_accel"), pytestconfig.stash[stash.PLAN].lock)
    atexit.register(pool.close)  # also on an interrupted session
    yield pool
    pool.close()


@pytest.fixture
def vm(
    request: pytest.FixtureRequest, memhp_target: Target, memhp_pool: Pool
) -> Iterator[HotplugVM]:
    """A booted guest for this test's target, shared with compatible tests."""
    arch = memhp_target.arch
    accel = choose_accel(arch, request.config.getoption("memhp_accel")).name
    # The broadest missing piece is the one to report: what the machine lacks for the whole
    # module, then a kernel without the feature, then what the test itself needs.
    own = [m for m in request.node.own_markers if m.name == "needs"]
    _skip_if_lacking(arch, accel, [m for m in request.node.iter_markers("needs") if m not in own])
    config = load_config(memhp_pool.image(memhp_target).config)
    for feature in (f for m in request.node.iter_markers("needs_kernel") for f in m.args):
        supported = kernel_supports(feature, config, arch)
        if not supported.value:
            pytest.skip(f"{memhp_target.kernel}: no {feature} support ({supported.why})")
    _skip_if_lacking(arch, accel, own)
    boot, fresh = Boot.of(request.node, arch)
    machine = memhp_pool.acquire(memhp_target, boot, fresh)
    v = HotplugVM(machine, request.config.stash[stash.PLAN].overrides)
    if request.config.getoption("memhp_results"):
        v.snapshots = []
    request.node.stash[stash.VM] = v
    v.dmesg_start = len(v.guest.dmesg())
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: fail it if the guest kernel complained meanwhile. A failed
    check on a VM that is gone meanwhile is judged again: QEMU dead or frozen is the
    infrastructure's, a panic on the console the kernel's."""
    v = item.stash.get(stash.VM, None)
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
        lines = v.guest.dmesg()[v.dmesg_start :]
        allow = [a for m in item.iter_markers("dmesg_allow") for a in m.args]
        splats = find_splats(lines, allow)
        if splats:
            raise AssertionError(format_splats(splats, lines))
    return result


def _lost_meanwhile(machine: QemuMachine) -> MemhpError | None:
    """The error of a VM that no longer serves (None if it does)."""
    try:
        machine.check_alive("the check after a failed scenario", 0.0)
    except MemhpError as exc:
        return exc
    return None


def _attach_dmesg(item: pytest.Item, title: str) -> None:
    v = item.stash.get(stash.VM, None)
    if v is None or not v.machine.alive():
        return
    with contextlib.suppress(MemhpError):
        lines = v.guest.dmesg()[v.dmesg_start :]
        item.add_report_section("call", title, "\n".join(lines[-80:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Infrastructure failures say so, with the console tail, and are counted apart. memhp's
    own errors are reported by their message, not a traceback: it says what happened."""
    report: pytest.TestReport = yield
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, InfrastructureError):
        report.user_properties.append(("memhp_outcome", "infrastructure"))
        report.sections.append(
            ("memhp: infrastructure failure (not a kernel verdict)", exc.details() or str(exc))
        )
    elif isinstance(exc, KernelFailure) and exc.console_tail:
        report.sections.append(("memhp: guest console", exc.console_tail))
    if isinstance(exc, MemhpError) and report.failed:
        report.longrepr = f"{type(exc).__name__}: {exc}"
    results_dir = item.config.getoption("memhp_results")
    if results_dir and "memhp_target" in getattr(item, "callspec", NO_CALLSPEC).params:
        record(item, call, report, results_dir)
    return report


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
    results = load_results(results_dir)
    junit_properties(config, results)
    kc, page = write_reports(results_dir)
    if tr is not None:
        tr.write_line(f"memhp: {len(results)} results; KCIDB {kc}, report {page}")


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Infrastructure failures in full, then a table: target x scenario -> outcome."""
    _infra_section(terminalreporter)
    rows: dict[str, dict[str, str]] = {}
    ids = [t.id for t in targets(config)]
    for kind in ("passed", "failed", "error", "skipped", "infra"):
        for rep in terminalreporter.stats.get(kind, []):
            nodeid = getattr(rep, "nodeid", "")
            if not nodeid.startswith("testcases") or (rep.when != "call" and kind == "passed"):
                continue
            name, target = scenario_name(nodeid, ids)
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
