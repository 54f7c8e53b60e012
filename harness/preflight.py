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
import subprocess
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
from harness.qemu.accel import choose_accel

DEFAULT_ARCHES = ("x86_64", "ppc64le")


@dataclass(frozen=True)
class Target:
    """One (arch, kernel spec) the scenarios run on."""

    arch: Arch
    kernel: str

    @property
    def id(self) -> str:
        return f"{self.arch.name}-{self.kernel}"


@dataclass(frozen=True)
class Plan:
    """What a validated run will do."""

    targets: tuple[Target, ...]
    overrides: dict[str, str] = field(default_factory=dict)
    lock: Lock | None = None


def matrix_help() -> str:
    """The default kernels per arch, for --help texts."""
    return "; ".join(
        f"{name}: {' '.join(get_arch(name).default_kernels)}" for name in DEFAULT_ARCHES
    )


def targets(arches: list[str] | None, kernels_: list[str] | None) -> tuple[Target, ...]:
    """Every (arch, kernel): the given kernels on each arch, else each arch's matrix."""
    profiles = [get_arch(a) for a in arches or DEFAULT_ARCHES]
    return tuple(Target(a, k) for a in profiles for k in (kernels_ or a.default_kernels))


def check(
    arches: list[str] | None,
    kernels_: list[str] | None,
    *,
    accel: str | None,
    expects: list[str],
    lock: Path | None = None,
) -> Plan:
    """Validate everything a run needs; UsageError (one line, what to do) at the first
    problem. Debian specs are resolved against the archive's indexes (refreshed when
    stale), or against cached images when the archive cannot be reached."""
    plan = Plan(
        targets(arches, kernels_),
        parse_overrides(expects),
        load_lock(lock) if lock is not None else None,
    )
    _check_cache()
    for tool in HOST_TOOLS:
        host_tool(tool)
    for arch in dict.fromkeys(t.arch for t in plan.targets):  # in order, once each
        _check_qemu(arch)
        choose_accel(arch, accel)
    for target in plan.targets:
        _check_kernel(target, plan.lock)
    return plan


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


def _check_qemu(arch: Arch) -> None:
    binary = shutil.which(arch.qemu_binary)
    if binary is None:
        raise UsageError(
            f"{arch.qemu_binary} not found: install the {arch.qemu_package} "
            "package (./setup.sh does)"
        )
    try:
        subprocess.run([binary, "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"{binary} does not run ({exc}): reinstall {arch.qemu_package}") from None
    if shutil.which("setpriv") is None:
        raise UsageError("setpriv not found: install util-linux")


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
