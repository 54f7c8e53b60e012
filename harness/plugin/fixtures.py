"""The fixtures scenarios use: the pool of booted guests and ``vm``, one guest as a scenario
sees it. What a kernel, arch or accelerator lacks skips the scenario before any boot."""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator

import pytest

from harness.arch import Arch
from harness.hotplug.expectations import kernel_supports
from harness.hotplug.vm import HotplugVM
from harness.kconfig import KernelConfig
from harness.kconfig import load as load_config
from harness.plugin import stash
from harness.plugin.pool import Boot, Key, Pool
from harness.plugin.recording import PageFlagRecorder
from harness.plugin.verdicts import item_allowed
from harness.preflight import Target
from harness.qemu import machine as machine_mod
from harness.qemu.accel import choose_accel
from harness.qemu.builds import QemuBuild
from harness.qemu.facts import facts as qemu_facts
from harness.workers import idle_limit


@pytest.fixture(scope="session")
def memhp_pool(pytestconfig: pytest.Config) -> Iterator[Pool]:
    machine_mod.sweep_stale_dirs()  # left by a harness that was SIGKILLed
    pool = Pool(pytestconfig.getoption("memhp_accel"), pytestconfig.stash[stash.PLAN])
    atexit.register(pool.close)  # also on an interrupted session
    pytestconfig.stash[stash.POOL] = pool
    yield pool
    pool.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a scenario's guest went back to the pool: trim the pool to what the next
    scenario (the one this process runs next) will use."""
    result = yield
    pool = item.config.stash.get(stash.POOL, None)
    if pool is not None:
        pool.trim(_key(nextitem), idle_limit())
    return result


def _key(item: pytest.Item | None) -> Key | None:
    """The pool key of ``item``'s guest; None for no item or one without a target."""
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("memhp_target") if callspec else None
    if item is None or not isinstance(target, Target):
        return None
    return target, Boot.of(item, target.arch)[0]


@pytest.fixture
def vm(
    request: pytest.FixtureRequest, memhp_target: Target, memhp_pool: Pool
) -> Iterator[HotplugVM]:
    """A booted guest for this test's target, shared with compatible tests."""
    arch = memhp_target.arch
    accel = choose_accel(arch, request.config.getoption("memhp_accel")).name
    # The broadest missing piece is the one to report: what the machine lacks for the whole
    # module, then the QEMU, then a kernel without the feature, then what the test itself
    # needs.
    own = [m for m in request.node.own_markers if m.name == "needs"]
    _skip_if_lacking(arch, accel, [m for m in request.node.iter_markers("needs") if m not in own])
    _skip_if_qemu_lacks(request.node, arch, memhp_pool.plan.qemu(memhp_target))
    image_config = load_config(memhp_pool.image(memhp_target).config)
    if image_config.options and (lacks := _kernel_lacks(request.node, memhp_target, image_config)):
        pytest.skip(lacks)  # else judged once the guest says (/proc/config.gz)
    _skip_if_lacking(arch, accel, own)
    boot, fresh = Boot.of(request.node, arch)
    fresh = fresh or bool(request.config.getoption("memhp_fresh_guests"))
    machine = memhp_pool.acquire(memhp_target, boot, fresh)
    reusable = False
    try:
        v = HotplugVM(machine, request.config.stash[stash.PLAN].overrides)
        if not image_config.options and (
            lacks := _kernel_lacks(request.node, memhp_target, v.facts.config)
        ):
            reusable = not fresh  # nothing was done to the guest
            pytest.skip(lacks)
        if request.config.getoption("memhp_results"):
            recorder = PageFlagRecorder()
            v.observers.append(recorder)
            request.node.stash[stash.RECORDER] = recorder
        request.node.stash[stash.VM] = v
        request.node.stash[stash.TRANSCRIPT_MARK] = machine.transcript.mark()
        v.dmesg_start = len(v.guest.dmesg())
        yield v
        v.observers.clear()  # the pictures show the test's steps, not the cleanup
        reusable = not fresh and v.cleanup(item_allowed(request.node))
    finally:
        memhp_pool.release(machine, reusable)


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``measure(name, value)``: a number the scenario measured (JSON), kept in its result
    record, KCIDB's misc and the JUnit suite properties (xunit2 has no test properties)."""
    kept = request.node.stash.setdefault(stash.MEASUREMENTS, {})

    def record(name: str, value: object) -> None:
        kept[name] = value

    return record


def _kernel_lacks(item: pytest.Item, target: Target, config: KernelConfig) -> str | None:
    """Why the kernel cannot take part (needs_kernel against its config: the image's before
    booting, else the guest's own /proc/config.gz), or None."""
    for feature in (f for m in item.iter_markers("needs_kernel") for f in m.args):
        supported = kernel_supports(feature, config, target.arch)
        if not supported.value:
            return f"{target.kernel}: no {feature} support ({supported.why})"
    return None


def _skip_if_qemu_lacks(item: pytest.Item, arch: Arch, qemu: QemuBuild) -> None:
    """needs_qemu(...): asked of the QEMU itself (harness.qemu.facts), before booting; a kind
    of device stands for the machine's type of it ("virtio-mem" -> virtio-mem-ccw on s390x,
    "nvdimm" -> spapr-nvdimm on pseries), with any ".property" kept."""
    wanted = [
        ".".join((arch.qemu_type(kind), *prop))
        for m in item.iter_markers("needs_qemu")
        for kind, *prop in (f.split(".", 1) for f in m.args)
    ]
    lacking = qemu_facts(qemu).lacking(wanted) if wanted else []
    if lacking:
        pytest.skip(
            f"{qemu.label} ({qemu.binary.name}) has no {', '.join(lacking)} (its "
            "qom-list-types and device-list-properties say)"
        )


def _skip_if_lacking(arch: Arch, accel: str, markers: list[pytest.Mark]) -> None:
    for prop in (p for m in markers for p in m.args):
        why = arch.lacking(prop, accel)
        if why:
            pytest.skip(f"{arch.name} ({accel}): {why}")
