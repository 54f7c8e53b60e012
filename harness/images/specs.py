"""Kernel specs: what ``--memhp-kernel`` accepts, resolved to something an image can hold.

* ``debian:LINE[/FLAVOUR]``: the newest Debian build of an upstream line (``debian:6.12``,
  ``debian:6.12/rt``, ``debian:6.12/64k`` on ppc64le), from whichever suite serves it.
* ``PATH[,MODULES]``: a local kernel image (bzImage or vmlinux) and, optionally, its
  ``lib/modules/<release>`` directory.
* ``build:DIR``: a build directory made by ``memhp kernel build``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.arch import Arch
from harness.errors import UsageError
from harness.images.apt import AptCache, Package, VersionKey, depends_names, parse_depends
from harness.kbuild import image_of


@dataclass(frozen=True)
class LeftOut:
    """A dependency of a Debian kernel package the image is built without, and why."""

    dependency: str  # as the index writes it
    why: str
    of_build: bool  # a package of the same build (an exact version): it may hold kernel files

    def __str__(self) -> str:
        return f"{self.dependency}: {self.why}"


@dataclass(frozen=True)
class DebianKernel:
    spec: str
    package: Package  # linux-image-*: the build the spec resolved to
    # Packages of the same build it depends on (exact version), which may hold the kernel,
    # its config or its modules (Debian's 7.x split: linux-binary-*, linux-modules-*, ...).
    parts: tuple[Package, ...] = ()
    left_out: tuple[LeftOut, ...] = ()

    @property
    def packages(self) -> tuple[Package, ...]:
        return (self.package, *self.parts)


@dataclass(frozen=True)
class LocalKernel:
    spec: str
    image: Path
    modules: Path | None


KernelSource = DebianKernel | LocalKernel


def parse_debian_spec(spec: str) -> tuple[str, str | None]:
    """'debian:6.12/rt' -> ('6.12', 'rt')."""
    m = re.fullmatch(r"debian:(\d+\.\d+)(?:/([\w-]+))?", spec)
    if not m:
        raise UsageError(
            f"kernel spec '{spec}' is not of the form debian:X.Y[/flavour] "
            "(e.g. debian:6.12, debian:6.12/rt)"
        )
    return m.group(1), m.group(2)


def resolve(spec: str, arch: Arch, apt: AptCache | None) -> KernelSource:
    """The kernel ``spec`` names: for debian: specs the newest build (see candidates)."""
    return candidates(spec, arch, apt)[0]


def candidates(spec: str, arch: Arch, apt: AptCache | None) -> list[KernelSource]:
    """What ``spec`` may be built from, best first: a local kernel is itself; a debian: spec
    is every build of its line and flavour the indexes list, newest first, each copy in
    its own suite (a pool can lack a file its index lists: the next one is tried). Whether
    a build holds everything a guest needs is known only from its files (build.py)."""
    if spec.startswith("build:"):
        return [resolve_build(spec, arch)]
    if spec.startswith("debian:"):
        if apt is None:
            raise UsageError("debian: kernel specs need the apt cache")
        return [
            DebianKernel(spec, package, *same_build(package, apt))
            for package in debian_candidates(spec, arch, apt)
        ]
    return [resolve_local(spec, arch)]


def resolve_debian(spec: str, arch: Arch, apt: AptCache) -> Package:
    """The newest Debian kernel package of ``spec``."""
    return debian_candidates(spec, arch, apt)[0]


def debian_candidates(spec: str, arch: Arch, apt: AptCache) -> list[Package]:
    """Every real kernel package of the spec's line and flavour, newest first.

    Real packages carry the full ABI in their name (linux-image-6.1.0-57-amd64,
    linux-image-6.12.118+deb13-amd64); metapackages such as linux-image-6.12-powerpc64le
    share a real package's version but hold no kernel: they depend on the real one.
    """
    line, suffix = parse_debian_spec(spec)
    flavour = arch.flavour(suffix)
    # linux-image-<abi>-<flavour>[-unsigned]; the signed and unsigned builds carry the same
    # kernel and modules, either will do.
    name_re = re.compile(
        rf"linux-image-{re.escape(line)}\.\d+[-+][\w.~+]*?-"
        rf"{re.escape(flavour)}(?:-unsigned)?"
    )
    found = [
        p
        for p in apt.find(lambda name: name_re.fullmatch(name) is not None)
        if (p.upstream == line or p.upstream.startswith(line + "."))
        and not any(n.startswith("linux-image-") for n in depends_names(p.depends))
    ]
    if not found:
        raise UsageError(
            f"no Debian {arch.debian_arch} kernel package matches '{spec}' "
            f"(looked for linux-image-{line}.*-{flavour} in bookworm, trixie and their "
            "security/backports suites): try another line or flavour"
        )
    # Newest first; of equal versions the unsigned build, then the main archive's pool
    # before the security archive's (the one seen lagging behind its index).
    return sorted(
        found,
        key=lambda p: (
            VersionKey(p.version),
            p.name.endswith("-unsigned"),
            not p.suite.endswith("-security"),
        ),
        reverse=True,
    )


# What a dependency that is not of the build itself is for: the tools that install a kernel
# on a host (linux-base's scripts, kmod, an initramfs generator); a guest image needs none.
HOST_TOOL = "not part of this build (a tool for installing it on a host)"
UNLISTED = "no index lists it"


def same_build(package: Package, apt: AptCache) -> tuple[tuple[Package, ...], tuple[LeftOut, ...]]:
    """The packages of ``package``'s own build it depends on, as the indexes list them, and
    every dependency left out, with why.

    A package of the same build is an exact ``(= VERSION)`` dependency, followed through its
    own (Debian 7.x: linux-image-X -> linux-binary-X, linux-modules-X, linux-base-X). Which of
    them hold the kernel, its config and its modules is read from their files at build time:
    one that no index lists is left out here, and the build says if anything was then missing.
    """
    parts: list[Package] = []
    todo = [package]
    while todo:
        pkg = todo.pop(0)
        for dep in parse_depends(pkg.depends):
            if dep.relation == "=" and dep.name not in {p.name for p in (package, *parts)}:
                found = apt.listed(dep.name, dep.version, prefer=pkg.suite)
                if found is not None:
                    parts.append(found)
                    todo.append(found)
    return tuple(parts), left_out_of((package, *parts), UNLISTED)


def describe(left_out: Sequence[LeftOut]) -> str:
    """Left-out dependencies in one line: those of the build each with why, host tools as one."""
    tools = [dep.dependency for dep in left_out if not dep.of_build]
    said = [str(dep) for dep in left_out if dep.of_build]
    return "; ".join(said + ([f"{', '.join(tools)}: {HOST_TOOL}"] if tools else []))


def left_out_of(packages: Sequence[Package], missing: str) -> tuple[LeftOut, ...]:
    """The dependencies of ``packages`` that are not among them: host tools, and packages of
    the same build that are not there (``missing`` says why)."""
    seen = {p.name for p in packages}
    out = []
    for pkg in packages:
        for dep in parse_depends(pkg.depends):
            if dep.name not in seen:
                seen.add(dep.name)
                of_build = dep.relation == "="
                out.append(LeftOut(dep.clause, missing if of_build else HOST_TOOL, of_build))
    return tuple(out)


def resolve_build(spec: str, arch: Arch) -> LocalKernel:
    """build:DIR, a directory made by memhp kernel build (or any O= build dir with mod/)."""
    out = Path(spec.removeprefix("build:")).expanduser()
    if not out.is_dir():
        raise UsageError(
            f"kernel spec '{spec}': {out} is not a directory (make one with memhp kernel build)"
        )
    image, modules = image_of(out, arch)
    arch.check_kernel(image)
    return LocalKernel(spec, image.resolve(), modules.resolve() if modules else None)


def resolve_local(spec: str, arch: Arch) -> LocalKernel:
    image_s, _, modules_s = spec.partition(",")
    image = Path(image_s).expanduser()
    if not image.is_file():
        raise UsageError(f"kernel spec '{spec}' is neither debian:X.Y nor an existing kernel file")
    arch.check_kernel(image)
    modules = Path(modules_s).expanduser() if modules_s else None
    if modules is not None and not modules.is_dir():
        raise UsageError(f"modules directory {modules} does not exist (give lib/modules/<release>)")
    return LocalKernel(spec, image.resolve(), modules.resolve() if modules else None)
