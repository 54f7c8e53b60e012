"""Kernel specs: what ``--memhp-kernel`` accepts, resolved to something an image can hold.

* ``debian:LINE[/FLAVOUR]``: the newest Debian build of an upstream line (``debian:6.12``,
  ``debian:6.12/rt``, ``debian:6.12/64k`` on ppc64le), from whichever suite serves it.
* ``PATH[,MODULES]``: a local kernel image (bzImage or vmlinux) and, optionally, its
  ``lib/modules/<release>`` directory.
* ``build:DIR``: a build directory made by ``memhp kernel build``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.arch import Arch
from harness.errors import ArchiveError, UsageError
from harness.images.apt import AptCache, Package, VersionKey, depends_names
from harness.kbuild import image_of
from harness.progress import progress


@dataclass(frozen=True)
class DebianKernel:
    spec: str
    package: Package  # linux-image-*
    parts: tuple[Package, ...] = ()  # split packages holding the kernel and modules

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
    its own suite (a pool can lack a file its index lists: the next one is tried)."""
    if spec.startswith("build:"):
        return [resolve_build(spec, arch)]
    if spec.startswith("debian:"):
        if apt is None:
            raise UsageError("debian: kernel specs need the apt cache")
        out: list[KernelSource] = []
        for package in debian_candidates(spec, arch, apt):
            try:
                out.append(DebianKernel(spec, package, split_parts(package, apt)))
            except ArchiveError as exc:
                progress.note(f"{spec}: skipping {package}: {exc}")
        if not out:
            raise ArchiveError(f"{spec}: no build of it has all its packages in the indexes")
        return out
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


# Debian's 7.x packaging splits linux-image-<abi> into a metapackage depending on these.
SPLIT_PREFIXES = ("linux-binary-", "linux-modules-", "linux-base-")


def split_parts(package: Package, apt: AptCache) -> tuple[Package, ...]:
    """The packages a split linux-image-* depends on for its kernel and modules, at its
    own version and from its own suite."""
    names = [n for n in depends_names(package.depends) if n.startswith(SPLIT_PREFIXES)]
    return tuple(apt.exact(n, package.version, package.suite) for n in names)


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
