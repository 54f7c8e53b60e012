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
from harness.debian import AptCache, Package, VersionKey, depends_names
from harness.errors import UsageError
from harness.kbuild import image_of


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
    if spec.startswith("build:"):
        return resolve_build(spec, arch)
    if spec.startswith("debian:"):
        if apt is None:
            raise UsageError("debian: kernel specs need the apt cache")
        package = resolve_debian(spec, arch, apt)
        return DebianKernel(spec, package, split_parts(package, apt))
    return resolve_local(spec, arch)


def resolve_debian(spec: str, arch: Arch, apt: AptCache) -> Package:
    line, suffix = parse_debian_spec(spec)
    flavour = arch.flavour(suffix)
    # linux-image-<abi>-<flavour>[-unsigned]; the signed and unsigned builds carry the same
    # kernel and modules, either will do.
    name_re = re.compile(rf"linux-image-{re.escape(line)}[.\d]*[^-]*(?:-\d+)?-"
                         rf"{re.escape(flavour)}(?:-unsigned)?")
    candidates = [p for p in apt.find(lambda name: name_re.fullmatch(name) is not None)
                  if p.upstream == line or p.upstream.startswith(line + ".")]
    if not candidates:
        raise UsageError(
            f"no Debian {arch.debian_arch} kernel package matches '{spec}' "
            f"(looked for linux-image-{line}.*-{flavour} in bookworm, trixie and their "
            "security/backports suites): try another line or flavour"
        )
    return max(candidates, key=lambda p: (VersionKey(p.version), p.name.endswith("-unsigned")))


# Debian's 7.x packaging splits linux-image-<abi> into a metapackage depending on these.
SPLIT_PREFIXES = ("linux-binary-", "linux-modules-", "linux-base-")


def split_parts(package: Package, apt: AptCache) -> tuple[Package, ...]:
    """The packages a split linux-image-* depends on for its kernel and modules."""
    names = [n for n in depends_names(package.depends) if n.startswith(SPLIT_PREFIXES)]
    return tuple(apt.newest(n, package.suite) for n in names)


def resolve_build(spec: str, arch: Arch) -> LocalKernel:
    """build:DIR, a directory made by memhp kernel build (or any O= build dir with mod/)."""
    out = Path(spec.removeprefix("build:")).expanduser()
    if not out.is_dir():
        raise UsageError(f"kernel spec '{spec}': {out} is not a directory "
                         "(make one with memhp kernel build)")
    image, modules = image_of(out, arch)
    arch.check_kernel(image)
    return LocalKernel(spec, image.resolve(), modules.resolve() if modules else None)


def resolve_local(spec: str, arch: Arch) -> LocalKernel:
    image_s, _, modules_s = spec.partition(",")
    image = Path(image_s).expanduser()
    if not image.is_file():
        raise UsageError(
            f"kernel spec '{spec}' is neither debian:X.Y nor an existing kernel file"
        )
    arch.check_kernel(image)
    modules = Path(modules_s).expanduser() if modules_s else None
    if modules is not None and not modules.is_dir():
        raise UsageError(f"modules directory {modules} does not exist (give lib/modules/<release>)")
    return LocalKernel(spec, image.resolve(), modules.resolve() if modules else None)
