"""Which QEMU runs a guest: the QEMU is an axis of a run, like the kernel.

``--qemu SPEC`` (pytest: ``--memhp-qemu``), resolved once per arch before any boot:

* ``host``: the arch's binary on $PATH (the default);
* ``PATH``: a QEMU binary, or a QEMU build directory holding the arch's binary (a QEMU
  developer's own tree), its firmware where the build puts it (``pc-bios/``, as ``-L``);
* ``debian:X.Y``: the newest Debian build of that QEMU line that really downloads, through
  memhp's private apt configuration (the same suites, fallback and SHA256 checks as a
  kernel), extracted with its library closure and firmware into memhp's cache, never
  installed on the host, and run with its own loader and libraries (a trixie build needs a
  newer libc than the host's). QEMU_MODULE_DIR points at its own modules: QEMU otherwise
  loads the host's from its compiled-in directory and aborts ("Only modules from the same
  build can be loaded").

A ``QemuBuild`` says how to run it (the argv prefix, its environment, its firmware) and what
it is (``identity``): the build travels with every result, as the kernel does.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import cache
from harness.arch import Arch, Firmware
from harness.errors import ArchiveError, ImageError, UsageError
from harness.images.apt import SUITES, AptCache, Package, VersionKey
from harness.progress import progress

HOST = "host"
SPEC_HELP = "host, debian:X.Y (e.g. debian:10.0, debian:11.1) or PATH (a QEMU binary or build dir)"
_DEBIAN = re.compile(r"debian:(\d+)\.(\d+)")
# What a QEMU build needs besides its binary package: the shared part, firmware and the
# option ROMs its machines load.
COMPANIONS = ("qemu-system-common", "qemu-system-data", "seabios", "ipxe-qemu")
# The build's loadable modules. QEMU looks for a module in QEMU_MODULE_DIR, then in its
# compiled-in directory (the host's QEMU's modules: an abort); with all of its own modules
# beside it, it never looks further. Their libraries (GTK, spice, ...) are not taken: a
# module that cannot load says so, and a headless guest needs none.
MODULES = (
    "qemu-system-gui",
    "qemu-system-modules-opengl",
    "qemu-system-modules-spice",
    "qemu-block-extra",
)
_EXTRACTED = ".memhp-extracted"  # written last: a root without it is incomplete


@dataclass(frozen=True)
class QemuBuild:
    """One QEMU for one arch: how to run it and what it is."""

    spec: str
    binary: Path  # the qemu-system-* executable
    version: str  # "10.0.13", as the binary says
    identity: str  # one line: which build and why (the package, or the path)
    argv: tuple[str, ...]  # what runs it (a private loader, then the binary)
    env: Mapping[str, str] = field(default_factory=dict)  # QEMU_MODULE_DIR for a private one
    datadir: Path | None = None  # firmware (-L); None: QEMU's compiled-in directory
    packages: tuple[Package, ...] = ()  # a Debian build's .debs, for the lock file
    firmware: Path | None = None  # what the machine boots through (-bios), where it must

    @property
    def label(self) -> str:
        """Short, for progress lines and report columns: 'QEMU 10.0.13 (debian:10.0)'."""
        return f"QEMU {self.version}" + ("" if self.spec == HOST else f" ({self.spec})")

    def to_json(self) -> dict[str, object]:
        """For the xdist workers (resolved once, on the controller) and the records."""
        return {
            "spec": self.spec,
            "binary": str(self.binary),
            "version": self.version,
            "identity": self.identity,
            "argv": list(self.argv),
            "env": dict(self.env),
            "datadir": str(self.datadir) if self.datadir else None,
            "packages": [asdict(p) for p in self.packages],
            "firmware": str(self.firmware) if self.firmware else None,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QemuBuild:
        return cls(
            d["spec"],
            Path(d["binary"]),
            d["version"],
            d["identity"],
            tuple(d["argv"]),
            dict(d["env"]),
            Path(d["datadir"]) if d["datadir"] else None,
            tuple(Package(**p) for p in d["packages"]),
            Path(d["firmware"]) if d.get("firmware") else None,
        )


def check_spec(spec: str) -> None:
    """The form of a QEMU spec, before anything is looked up.

    :raises UsageError: not host, debian:X.Y or an existing path.
    """
    if spec == HOST or _DEBIAN.fullmatch(spec) or Path(spec).exists():
        return
    raise UsageError(f"--qemu {spec!r}: not a QEMU spec ({SPEC_HELP}), and no such file")


def resolve(
    spec: str,
    arch: Arch,
    apt: AptCache | None = None,
    pinned: tuple[Package, ...] | None = None,
) -> QemuBuild:
    """The QEMU ``spec`` names for ``arch``; a Debian build exactly as ``pinned`` (a lock
    file's packages), else the newest that downloads.

    :raises UsageError: bad spec, no such binary, not a QEMU of this arch.
    :raises ArchiveError: the archive could not give the Debian build.
    """
    check_spec(spec)
    build = _resolve(spec, arch, apt, pinned)
    return _with_firmware(build, arch.firmware, apt, pinned) if arch.firmware else build


def _resolve(
    spec: str, arch: Arch, apt: AptCache | None, pinned: tuple[Package, ...] | None
) -> QemuBuild:
    if spec == HOST:
        return _host(arch)
    if _DEBIAN.fullmatch(spec) and pinned:
        qemu = next((p for p in pinned if p.name == arch.qemu_package), None)
        if qemu is None:
            raise UsageError(f"the lock pins no {arch.qemu_package} for {spec}: lock it again")
        apt = apt or host_apt()
        return _private(spec, arch, qemu, _extract(qemu, list(pinned), apt), pinned)
    if _DEBIAN.fullmatch(spec):
        return _debian(spec, arch, apt or host_apt())
    return _local(spec, arch)


def _with_firmware(
    build: QemuBuild, fw: Firmware, apt: AptCache | None, pinned: tuple[Package, ...] | None
) -> QemuBuild:
    """The build with the firmware its machine cannot boot without (arch.firmware), taken
    from Debian through memhp's private apt configuration whatever the QEMU (the host's
    may have none, or an older one), and part of the build's identity.

    :raises ArchiveError: the archive could not give it.
    :raises ImageError: its package does not hold the file.
    """
    apt = apt or host_apt()
    pkg = next((p for p in pinned or () if p.name == fw.package), None)
    if pkg is None:
        apt.update()
        pkg = _newest(apt, fw.package, [fw.suite])
    if pkg is None:
        raise ArchiveError(f"no index of {fw.suite} lists {fw.package} ({fw.why})")
    path = _extract(pkg, [pkg], apt) / fw.path
    if not path.is_file():
        raise ImageError(f"{pkg} has no {fw.path}")
    packages = (*build.packages, pkg) if build.packages else ()
    return replace(build, firmware=path, identity=f"{build.identity}; {pkg}", packages=packages)


def _host(arch: Arch) -> QemuBuild:
    binary = shutil.which(arch.qemu_binary)
    if binary is None:
        raise UsageError(
            f"{arch.qemu_binary} not found: install the {arch.qemu_package} package "
            "(./setup.sh does), or give --qemu debian:X.Y or a path"
        )
    version, said = _version([binary], {})
    return QemuBuild(HOST, Path(binary), version, f"host {binary} ({said})", (binary,))


def _local(spec: str, arch: Arch) -> QemuBuild:
    """A binary, or a build directory (QEMU's meson build puts qemu-system-* at its top and
    its firmware, pc-bios/, beside them)."""
    path = Path(spec).resolve()
    binary = path / arch.qemu_binary if path.is_dir() else path
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise UsageError(f"--qemu {spec}: no executable {binary.name} there for {arch.name}")
    if binary.name != arch.qemu_binary:
        raise UsageError(
            f"--qemu {spec}: {binary.name} is not {arch.qemu_binary}, the {arch.name} QEMU"
        )
    datadir = binary.parent / "pc-bios"
    # A build with --enable-modules has them beside the binary; QEMU run from elsewhere than
    # its install prefix would look for them in its compiled-in directory.
    modular = any(binary.parent.glob("accel-*.so")) or any(binary.parent.glob("hw-*.so"))
    env = {"QEMU_MODULE_DIR": str(binary.parent)} if modular else {}
    version, said = _version([str(binary)], env)
    return QemuBuild(
        spec,
        binary,
        version,
        f"{binary} ({said})",
        (str(binary),),
        env,
        datadir=datadir if datadir.is_dir() else None,
    )


def _version(argv: list[str], env: Mapping[str, str]) -> tuple[str, str]:
    """('10.0.13', 'QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)').

    :raises UsageError: it does not run, or is no QEMU.
    """
    try:
        proc = subprocess.run(
            [*argv, "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"{argv[-1]} does not run: {exc}") from None
    first = (proc.stdout.strip().splitlines() or [""])[0]
    m = re.match(r"QEMU emulator version (\d+\.\d+\.\d+)", first)
    if proc.returncode != 0 or m is None:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"{argv[-1]} is not a QEMU that runs here: {first or err}")
    return m.group(1), first


# -- Debian builds -----------------------------------------------------------------------


def host_apt() -> AptCache:
    """QEMU runs on the host: its packages are of the host's Debian architecture."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el"}.get(machine, machine)
    return AptCache(cache.path("apt", arch), arch)


def candidates(spec: str, arch: Arch, apt: AptCache) -> list[Package]:
    """Every build of the spec's QEMU line the indexes list, newest first.

    :raises UsageError: no suite lists that line.
    """
    m = _DEBIAN.fullmatch(spec)
    if m is None:
        raise UsageError(f"{spec}: not debian:X.Y")
    line = f"{m.group(1)}.{m.group(2)}"
    apt.update()
    found = [
        p
        for p in apt.find(lambda n: n == arch.qemu_package)
        if re.match(rf"(?:\d+:)?{re.escape(line)}(?:[.+~]|$)", p.version)
    ]
    if not found:
        lines = sorted(
            {
                ".".join(p.upstream.split(".")[:2])
                for p in apt.find(lambda n: n == arch.qemu_package)
            },
            key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()),
        )
        raise UsageError(
            f"--qemu {spec}: Debian has no {arch.qemu_package} {line} in "
            f"{', '.join(SUITES)} (lines it has: {', '.join(lines) or 'none'})"
        )
    return sorted(found, key=lambda p: VersionKey(p.version), reverse=True)


def _debian(spec: str, arch: Arch, apt: AptCache) -> QemuBuild:
    """The newest build of the line whose packages all download; the run says which it took
    and why any newer one could not be had."""
    problems = []
    for pkg in candidates(spec, arch, apt):
        try:
            packages = _closure(pkg, apt)
            root = _extract(pkg, packages, apt)
        except ArchiveError as exc:
            problems.append(f"{pkg}: {exc}")
            continue
        build = _private(spec, arch, pkg, root, tuple(packages))
        why = f"; newer builds could not be had: {'; '.join(problems)}" if problems else ""
        progress.note(f"qemu {spec} ({arch.name}): using {pkg}{why}")
        return build
    raise ArchiveError(f"--qemu {spec}: no build downloads: {'; '.join(problems)}")


def _base_suite(suite: str) -> str:
    """Where a backports or security build's libraries come from: its release."""
    return suite.split("-", 1)[0]


def _closure(qemu: Package, apt: AptCache) -> list[Package]:
    """The QEMU package, its companions of the same build, and every shared library they
    need, transitively, from the QEMU's suite or its release. Only libraries are followed:
    a private root runs one binary, not a system (no adduser, debconf, init scripts)."""
    suites = [qemu.suite, _base_suite(qemu.suite)]
    out: dict[str, Package] = {qemu.name: qemu}
    todo = [*COMPANIONS, *_needs(qemu)]
    while todo:
        name = todo.pop()
        if name in out or not (name in COMPANIONS or _is_library(name)):
            continue
        pkg = _newest(apt, name, suites)
        if pkg is None:
            raise ArchiveError(f"no index of {', '.join(suites)} lists {name}")
        out[name] = pkg
        todo += _needs(pkg)
    for name in MODULES:
        same = [p for s in suites for p in apt.index().get(s, {}).get(name, [])]
        out.update({p.name: p for p in same if p.version == qemu.version})
    return sorted(out.values(), key=lambda p: p.name)


def _is_library(name: str) -> bool:
    return name.startswith("lib") or name in ("zlib1g", "libc6")


def _needs(pkg: Package) -> list[str]:
    """Each Depends clause's first alternative that names a library (or a companion)."""
    names = []
    for clause in filter(None, (c.strip() for c in pkg.depends.split(","))):
        alts = [re.split(r"[\s(:\[]", a.strip(), maxsplit=1)[0] for a in clause.split("|")]
        names.append(next((a for a in alts if _is_library(a) or a in COMPANIONS), alts[0]))
    return names


def _newest(apt: AptCache, name: str, suites: Iterable[str]) -> Package | None:
    found = [p for s in suites for p in apt.index().get(s, {}).get(name, [])]
    return max(found, key=lambda p: VersionKey(p.version)) if found else None


def _extract(qemu: Package, packages: list[Package], apt: AptCache) -> Path:
    """The packages' files under one private root in memhp's cache (made once per set)."""
    key = hashlib.sha256("\0".join(p.sha256 for p in packages).encode()).hexdigest()[:16]
    root = cache.path("qemu", f"{qemu.name}-{qemu.version.split(':')[-1]}-{key}")
    if (root / _EXTRACTED).is_file():
        return root
    debs = apt.download(packages)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with progress(f"qemu: extracting {len(debs)} packages into {root}"):
        for deb in debs:
            _extract_deb(deb, root)
    (root / _EXTRACTED).write_text("\n".join(p.deb_name for p in packages) + "\n")
    return root


def _extract_deb(deb: Path, root: Path) -> None:
    """dpkg-deb -x, without dpkg's database (the root is no system)."""
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"{deb.name} does not unpack: {proc.stderr.strip()[-300:]}")


def _private(
    spec: str, arch: Arch, pkg: Package, root: Path, packages: tuple[Package, ...]
) -> QemuBuild:
    """How to run an extracted build: its own loader and libraries, its own modules and
    firmware.

    :raises ImageError: the root lacks its loader, its binary, or a library it links.
    """
    triplet = _host_triplet()
    libs = [root / "usr/lib" / triplet, root / "lib" / triplet]
    loader = next((p for p in (d / _loader_name() for d in libs) if p.exists()), None)
    binary = root / "usr/bin" / arch.qemu_binary
    if loader is None or not binary.is_file():
        raise ImageError(f"the extracted {pkg} at {root} has no loader or no {binary.name}")
    argv = (str(loader), "--library-path", ":".join(map(str, libs)), str(binary))
    env = {"QEMU_MODULE_DIR": str(root / "usr/lib" / triplet / "qemu")}
    missing = _missing_libraries(argv[:3], binary)
    if missing:
        raise ImageError(f"the extracted {pkg} lacks {', '.join(missing)}: {root}")
    version, _ = _version(list(argv), env)
    return QemuBuild(
        spec,
        binary,
        version,
        str(pkg),
        argv,
        env,
        datadir=root / "usr/share/qemu",
        packages=packages,
    )


def _host_triplet() -> str:
    return {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(
        os.uname().machine, f"{os.uname().machine}-linux-gnu"
    )


def _loader_name() -> str:
    return {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}.get(
        os.uname().machine, "ld.so"
    )


def _missing_libraries(loader: tuple[str, ...], binary: Path) -> list[str]:
    """Libraries the private loader cannot find for ``binary`` (ld.so --list)."""
    proc = subprocess.run([*loader, "--list", str(binary)], capture_output=True, text=True)
    return re.findall(r"^\s*(\S+) => not found", proc.stdout, re.M)
