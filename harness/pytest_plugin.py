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
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.accel import choose_accel
from harness.arch import Arch, get_arch
from harness.dmesg import find_splats, format_splats
from harness.errors import InfrastructureError, KernelFailure, MemhpError
from harness.expectations import OVERRIDABLE, kernel_supports
from harness.images import Image
from harness.images import build as build_image
from harness.kconfig import load as load_config
from harness.machine import ColdPlug, Machine, MachineConfig
from harness.progress import progress
from harness.vm import VM

DEFAULT_ARCHES = ("x86_64", "ppc64le")


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "memhp(cmdline=(...), extra_cmdline=(...), fresh=False, memory=None, "
        "coldplug=()): guest boot configuration; cmdline replaces the arch's scenario "
        "command line (None: the kernel's defaults), extra_cmdline adds to it, fresh=True "
        "gives the test its own guest, coldplug lists harness.coldplug device specs")
    config.addinivalue_line(
        "markers", "dmesg_allow(*regex): kernel log lines the test provokes on purpose")
    config.addinivalue_line(
        "markers", "needs_kernel(*features): kernel features (e.g. 'nvdimm') the test needs; "
        "checked against the image's config before booting")
    config.addinivalue_line(
        "markers", "needs(*props): guest properties the test needs; skipped before booting "
        "where the arch profile lacks one (Arch.lacks says why)")
    config.stash[_OVERRIDES] = _overrides(config.getoption("memhp_expect") or [])
    if not hasattr(config, "workerinput"):  # xdist workers' output is not shown anyway
        _route_progress(config)


def _overrides(options: list[str]) -> dict[str, str]:
    out = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in OVERRIDABLE:
            raise pytest.UsageError(
                f"--memhp-expect {option}: give NAME=VALUE with NAME one of "
                f"{', '.join(sorted(OVERRIDABLE))}")
        out[name] = value
    return out


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


@dataclass(frozen=True)
class Target:
    arch: Arch
    kernel: str

    @property
    def id(self) -> str:
        return f"{self.arch.name}-{self.kernel}"


def targets(config: pytest.Config) -> list[Target]:
    arches = [get_arch(a) for a in config.getoption("memhp_arch") or DEFAULT_ARCHES]
    kernels = config.getoption("memhp_kernel")
    return [Target(a, k) for a in arches for k in (kernels or a.default_kernels)]


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

    def image(self, target: Target) -> Image:
        if target not in self.images:
            self.images[target] = build_image(target.kernel, target.arch)
        return self.images[target]

    def acquire(self, target: Target, boot: Boot, fresh: bool) -> Machine:
        key = (target, boot)
        if key in self.broken:  # one boot failure per configuration, not one per test
            raise self.broken[key]
        if not fresh and key in self.shared and self.shared[key].alive():
            return self.shared[key]
        try:
            machine = self._boot_with_retry(target, boot)
        except MemhpError as exc:
            self.broken[key] = exc
            raise
        if not fresh:
            self.shared[key] = machine
        return machine

    def _boot_with_retry(self, target: Target, boot: Boot) -> Machine:
        """One retry for a boot that died (rare under a loaded TCG host); never silent."""
        try:
            return self._boot(target, boot)
        except (InfrastructureError, KernelFailure) as first:
            machine = self._boot(target, boot)
            warnings.warn(f"{target.id}: first boot failed, the retry booted: {first}; "
                          f"console:\n{getattr(first, 'console_tail', '')}", stacklevel=1)
            return machine

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
    pool = Pool(pytestconfig)
    atexit.register(pool.close)  # also on an interrupted session
    yield pool
    pool.close()


@pytest.fixture
def vm(request: pytest.FixtureRequest, memhp_target: Target, memhp_pool: Pool) -> Iterator[VM]:
    """A booted guest for this test's target, shared with compatible tests."""
    arch = memhp_target.arch
    # Module-level needs first: the broadest missing piece is the one to report.
    for prop in (p for m in reversed(list(request.node.iter_markers("needs"))) for p in m.args):
        if prop in arch.lacks:
            pytest.skip(f"{arch.name}: {arch.lacks[prop]}")
    config = load_config(memhp_pool.image(memhp_target).config)
    for feature in (f for m in request.node.iter_markers("needs_kernel") for f in m.args):
        supported = kernel_supports(feature, config, arch)
        if not supported.value:
            pytest.skip(f"{memhp_target.kernel}: no {feature} support ({supported.why})")
    boot, fresh = Boot.of(request.node, arch)
    machine = memhp_pool.acquire(memhp_target, boot, fresh)
    v = VM(machine, request.config.stash[_OVERRIDES])
    request.node.stash[_VM] = v
    request.node.stash[_DMESG_START] = len(v.guest.dmesg())
    reusable = False
    try:
        yield v
        reusable = not fresh and v.cleanup()
    finally:
        memhp_pool.release(machine, reusable)


_VM = pytest.StashKey[VM]()
_OVERRIDES = pytest.StashKey[dict[str, str]]()
_DMESG_START = pytest.StashKey[int]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: fail it if the guest kernel complained meanwhile."""
    try:
        result = yield
    except BaseException:
        _attach_dmesg(item, "guest dmesg during the test")
        raise
    v = item.stash.get(_VM, None)
    if v is not None and v.machine.alive():
        lines = v.guest.dmesg()[item.stash[_DMESG_START]:]
        allow = [a for m in item.iter_markers("dmesg_allow") for a in m.args]
        splats = find_splats(lines, allow)
        if splats:
            raise AssertionError(format_splats(splats, lines))
    return result


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
    """Infrastructure failures say so, with the console tail, and are counted apart."""
    report: pytest.TestReport = yield
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, InfrastructureError):
        report.user_properties.append(("memhp_outcome", "infrastructure"))
        report.sections.append(("memhp: infrastructure failure (not a kernel verdict)",
                                exc.details() or str(exc)))
    elif isinstance(exc, KernelFailure):
        report.sections.append(("memhp: guest console", exc.console_tail))
    return report


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
    ids = sorted((t.id for t in targets(config)), key=len, reverse=True)
    for kind in ("passed", "failed", "error", "skipped", "infra"):
        for rep in terminalreporter.stats.get(kind, []):
            nodeid = getattr(rep, "nodeid", "")
            if not nodeid.startswith("testcases") or (rep.when != "call" and kind == "passed"):
                continue
            name, _, params = nodeid.rpartition("::")[2].partition("[")
            target = next((i for i in ids if params.startswith(i)), params.rstrip("]"))
            # Other parameters (e.g. sizes) stay with the scenario's name.
            extra = params[len(target):].strip("-]")
            outcome = {"error": "ERROR", "infra": "INFRA"}.get(kind, kind.upper())
            rows.setdefault(f"{name}[{extra}]" if extra else name, {})[target] = outcome
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
