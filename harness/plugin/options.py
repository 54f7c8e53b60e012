"""The plugin's options and markers, the run's inputs checked once before any boot, the
target parametrization and the shard selection."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest

from harness import preflight
from harness.arch import ARCHES
from harness.errors import EXIT_INFRA, EXIT_USAGE, InfrastructureError, UsageError
from harness.hotplug.expectations import parse_overrides
from harness.images.lockfile import load as load_lock
from harness.plugin import shards, stash
from harness.preflight import Plan, Target
from harness.progress import progress
from harness.qemu import builds
from harness.qemu.accel import ACCELS
from harness.qemu.builds import QemuBuild
from harness.signals import interrupt_on_termination

DEFAULT_ARCHES = preflight.DEFAULT_ARCHES
QEMUS = "memhp_qemus"  # workerinput key: the controller's resolved QEMU builds

# Markers of the long suites, each run with its own README command (pyproject's addopts and
# harness.scenarios deselect them by default).
SLOW_MARKERS = {
    "kbuild": "builds a kernel from source (slow; nightly: pytest -m kbuild)",
    "flavours": "every Debian flavour on both arches (slow; nightly: pytest -m flavours)",
    "newkernels": "Debian kernel lines outside the default matrix (slow; pytest -m newkernels)",
}

MARKERS = {
    "memhp(cmdline=(...), extra_cmdline=(...), fresh=False, memory=None, coldplug=(), "
    "cold_boot=False, numa=(), reboot=False, sleeps=False)": "guest boot configuration; "
    "cmdline replaces the arch's scenario command line (None: the kernel's defaults), "
    "extra_cmdline adds to it, "
    "fresh=True gives the test its own guest, coldplug lists harness.hotplug.coldplug device "
    "specs, cold_boot=True boots it instead of restoring a saved boot (a test that needs the "
    "boot itself; cold-plugged devices always boot), numa gives the boot RAM of each NUMA node "
    "(0: memoryless), reboot=True lets a guest reboot instead of ending QEMU, sleeps=True boots "
    "it through firmware that can wake it from S3",
    "dmesg_allow(*regex)": "kernel log lines the test provokes on purpose",
    "needs_kernel(*features)": "kernel features the test needs (see "
    "harness.hotplug.expectations.KERNEL_FEATURES); checked against the image's config before "
    "booting, a kernel without one skips naming the option",
    "needs(*props)": "guest properties the test needs; skipped before booting where the arch "
    "profile lacks one (Arch.lacks and tcg_lacks say why)",
    "needs_qemu(*features)": "device types or type.property the QEMU must have (asked of the "
    "QEMU itself, harness.qemu.facts; 'virtio-mem' and 'nvdimm' are the machine's types); a QEMU "
    "without one skips, naming it",
}


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
        help=f"guest arch: {', '.join(ARCHES)}; repeatable (default: {' '.join(DEFAULT_ARCHES)})",
    )
    g.addoption(
        "--memhp-qemu",
        action="append",
        metavar="SPEC",
        help=f"QEMU to run the guests: {builds.SPEC_HELP}; repeatable, each crossed with "
        "every kernel (default: the host's, on s390x Debian's 10.0; the default matrix adds "
        "QEMU 10.0 on the newest x86-64 kernel line)",
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
    g.addoption(
        "--memhp-repeat",
        type=int,
        default=0,
        metavar="N",
        help="run each failing scenario N more times on fresh guests: failed every time, "
        "or flaky (reports say which, with the counts)",
    )
    g.addoption(
        "--memhp-fresh-guests",
        action="store_true",
        help="every scenario on a guest of its own (no guest is shared)",
    )
    g.addoption(
        "--memhp-status",
        choices=("auto", "line", "plain", "off"),
        default="auto",
        help="where the run stands: one line redrawn on a terminal, plain lines at each "
        "tenth elsewhere (auto, the default), or off",
    )
    g.addoption("--memhp-only", type=Path, help=argparse.SUPPRESS)  # the reruns' node ids
    g.addoption("--memhp-workers-said", help=argparse.SUPPRESS)  # how many, memhp run said


def pytest_configure(config: pytest.Config) -> None:
    for name, text in (*SLOW_MARKERS.items(), *MARKERS.items()):
        config.addinivalue_line("markers", f"{name}: {text}")
    interrupt_on_termination()
    # memhp's own log at DEBUG (QMP traffic) goes into the captured log; the libraries'
    # chatter does not.
    for noisy in ("paramiko", "qemu.qmp", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config.stash[stash.PLAN] = _plan(config)
    if not hasattr(config, "workerinput"):  # xdist workers' output is not shown anyway
        _route_progress(config)
        if said := config.getoption("memhp_workers_said"):
            progress.note(said)  # after the input checks: bad input stays one line


def _plan(config: pytest.Config) -> Plan:
    """The validated run: checked once, on the controller, before any guest boots (a bad
    input is one line and exit status 2); xdist workers take the controller's word."""
    arches = config.getoption("memhp_arch")
    kernels = config.getoption("memhp_kernel")
    qemus = config.getoption("memhp_qemu")
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
                preflight.targets(arches, kernels, qemus),
                parse_overrides(expects),
                load_lock(lock_path) if lock_path else None,
                _resolved_qemus(config),
            )
        return preflight.check(
            arches,
            kernels,
            accel=config.getoption("memhp_accel"),
            expects=expects,
            lock=lock_path,
            qemus=qemus,
        )
    except UsageError as exc:
        pytest.exit(f"memhp: {exc}", returncode=EXIT_USAGE)
    except InfrastructureError as exc:  # e.g. the archive cannot give the QEMU asked for
        pytest.exit(f"memhp: {exc}", returncode=EXIT_INFRA)


def _resolved_qemus(config: pytest.Config) -> dict[tuple[str, str], QemuBuild]:
    """A worker takes the controller's QEMU builds (resolved once, before any boot)."""
    given = getattr(config, "workerinput", {}).get(QEMUS, {})
    out = {}
    for key, build in given.items():
        arch, spec = key.split(" ", 1)
        out[(arch, spec)] = QemuBuild.from_json(build)
    return out


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: hand each worker the resolved QEMU builds."""
    plan: Plan = node.config.stash[stash.PLAN]
    node.workerinput[QEMUS] = {f"{a} {s}": b.to_json() for (a, s), b in plan.qemus.items()}


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
    """--memhp-only: keep the node ids it lists; --memhp-shard: keep this runner's part;
    deselect the rest."""
    only = config.getoption("memhp_only")
    if only:
        wanted = set(only.read_text().split())
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in wanted])
        items[:] = [i for i in items if i.nodeid in wanted]
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
