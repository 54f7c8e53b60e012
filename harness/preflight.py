"""A run's inputs, checked once before any guest boots.

Kernel specs must resolve, the QEMU binaries exist, arch, accelerator and every --expect
NAME=VALUE be valid, the lock file (if any) pin every spec, and the cache be writable. The
first problem is a UsageError whose one line says what to do; the pytest plugin and the CLI
turn it into exit status 2 before collecting a single scenario.

An archive that does not answer is not bad input (the same command works once it does): the
run goes on, says so, and the target's scenarios are MISS (exit status 3).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, images
from harness.arch import Arch, get_arch
from harness.errors import ArchiveError, UsageError
from harness.hotplug.expectations import parse_overrides
from harness.images import specs
from harness.images.apt import AptCache
from harness.images.lockfile import Lock
from harness.images.lockfile import load as load_lock
from harness.images.tools import HOST_TOOLS, host_tool
from harness.progress import progress
from harness.qemu import builds, snapshots
from harness.qemu.accel import choose_accel
from harness.qemu.builds import QemuBuild
from harness.workers import idle_limit

DEFAULT_ARCHES = ("x86_64", "ppc64le")


@dataclass(frozen=True)
class Target:
    """One (arch, kernel spec, QEMU spec) the scenarios run on."""

    arch: Arch
    kernel: str
    qemu: str = builds.HOST

    @property
    def id(self) -> str:
        """The test id part: the host's QEMU is left out, as before QEMU was an axis."""
        qemu = "" if self.qemu == builds.HOST else f"-qemu-{self.qemu}"
        return f"{self.arch.name}-{self.kernel}{qemu}"


@dataclass(frozen=True)
class Plan:
    """What a validated run will do."""

    targets: tuple[Target, ...]
    overrides: dict[str, str] = field(default_factory=dict)
    lock: Lock | None = None
    qemus: dict[tuple[str, str], QemuBuild] = field(default_factory=dict)  # (arch, spec)

    def qemu(self, target: Target) -> QemuBuild:
        """The QEMU build of ``target``, resolved once for the run (by the preflight; here
        for a session that had none, such as the fault tests' own scenarios)."""
        key = (target.arch.name, target.qemu)
        if key not in self.qemus:
            self.qemus[key] = builds.resolve(target.qemu, target.arch)
        return self.qemus[key]


def matrix_help() -> str:
    """The default kernels per arch, for --help texts."""
    return "; ".join(
        f"{name}: {' '.join(get_arch(name).default_kernels)}" for name in DEFAULT_ARCHES
    )


def targets(
    arches: list[str] | None, kernels_: list[str] | None, qemus: list[str] | None = None
) -> tuple[Target, ...]:
    """Every (arch, kernel, QEMU): the given kernels on each arch, each with every given QEMU
    (default: the host's); with neither, each arch's matrix and its extra QEMU targets."""
    profiles = [get_arch(a) for a in arches or DEFAULT_ARCHES]
    out = []
    for arch in profiles:
        out += [
            Target(arch, k, q)
            for k in kernels_ or arch.default_kernels
            for q in qemus or (arch.default_qemu,)
        ]
        if not kernels_ and not qemus:
            out += [Target(arch, k, q) for k, q in arch.default_qemu_targets]
    return tuple(out)


def check(
    arches: list[str] | None,
    kernels_: list[str] | None,
    *,
    accel: str | None,
    expects: list[str],
    lock: Path | None = None,
    qemus: list[str] | None = None,
    boots: bool = True,
) -> Plan:
    """Validate everything a run needs; UsageError (one line, what to do) at the first
    problem. Debian specs are resolved against the archive's indexes (refreshed when
    stale), or against cached images when the archive cannot be reached. ``boots``: the run
    boots guests, so their QEMUs are resolved too (an image build needs none)."""
    plan = Plan(
        targets(arches, kernels_, qemus),
        parse_overrides(expects),
        load_lock(lock) if lock is not None else None,
    )
    for spec in qemus or ():
        builds.check_spec(spec)
    _check_cache()
    snapshots.budget_bytes()  # the environment's knobs, before anything boots
    idle_limit()
    for tool in HOST_TOOLS:
        host_tool(tool)
    if shutil.which("setpriv") is None:
        raise UsageError("setpriv not found: install util-linux")
    for arch in dict.fromkeys(t.arch for t in plan.targets):  # in order, once each
        choose_accel(arch, accel)
    for target in plan.targets:
        _check_kernel(target, plan.lock)
    # After the kernels: resolving a QEMU says which build it took, and a bad kernel spec
    # is to be the run's one line.
    for arch, spec in dict.fromkeys((t.arch, t.qemu) for t in plan.targets if boots):
        plan.qemus[(arch.name, spec)] = _resolve_qemu(spec, arch, plan.lock)
    return plan


def _resolve_qemu(spec: str, arch: Arch, lock: Lock | None) -> QemuBuild:
    """The QEMU build, said in one line; a Debian build the archive cannot give now is
    infrastructure (the run stops: no guest could boot without it)."""
    pinned = lock.pinned_qemu(arch.name, spec) if lock else None
    build = builds.resolve(spec, arch, pinned=pinned)
    said = " (pinned by the lock file)" if pinned else ""
    progress.note(f"{arch.name}: {build.label}: {build.identity}{said}")
    return build


def _check_cache() -> None:
    root = cache.root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".writable-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"memhp's cache {root} is not writable ({exc.strerror or exc}): "
            f"set {cache.ENV} to a directory you can write"
        ) from None


def _check_kernel(target: Target, lock: Lock | None) -> None:
    spec, arch = target.kernel, target.arch
    if not spec.startswith("debian:"):
        specs.resolve(spec, arch, None)  # the file or build directory, and its arch
        return
    _, flavour = specs.parse_debian_spec(spec)
    arch.flavour(flavour)
    if lock is not None:
        lock.pinned(arch.name, spec)
        return
    apt = AptCache(cache.path("apt", arch.debian_arch), arch.debian_arch)
    try:
        apt.update()
    except ArchiveError as exc:
        # Not bad input: the same command works once the archive answers. The run goes on,
        # and this target's scenarios are MISS (infrastructure, exit 3), unless an image
        # of it is cached (the build uses it, and says so).
        if images.cached(spec, arch) is None:
            progress.note(
                f"{spec} ({arch.name}): {exc}, and no image of it is cached: its "
                "scenarios will be MISS"
            )
        return
    specs.debian_candidates(spec, arch, apt)
