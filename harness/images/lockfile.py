"""memhp.lock: every (arch, debian: kernel spec) and every (arch, debian: QEMU spec) pinned
to exact packages and SHA256s.

``memhp image lock`` writes it from the images it built (so everything in it was really
downloadable); ``--locked`` builds from it instead of the archive's newest, so a nightly is
reproducible and two nights are comparable (``diff`` the lock files). Local kernels
(``PATH``, ``build:DIR``) are the user's own files and are not pinned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.images.apt import Package
from harness.images.specs import DebianKernel, left_out_of

VERSION = 1
DEFAULT_PATH = Path("memhp.lock")
QEMU = "qemu"  # the key prefix of a QEMU's pin: "qemu x86_64 debian:10.0"


@dataclass(frozen=True)
class Pinned:
    """What a lock says one image is made of."""

    kernel: DebianKernel
    userspace: tuple[Package, ...]


@dataclass
class Lock:
    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key(arch: str, spec: str) -> str:
        return f"{arch} {spec}"

    def pinned(self, arch: str, spec: str) -> Pinned | None:
        """The pinned packages of a debian: spec; None for local kernels."""
        if not spec.startswith("debian:"):
            return None
        entry = self.entries.get(self.key(arch, spec))
        if entry is None:
            raise UsageError(
                f"{spec} ({arch}) is not in {self.path}: run memhp image lock "
                f"--arch {arch} --kernel {spec} (or run without --locked)"
            )
        kernel = [Package(**p) for p in entry["kernel"]]
        left_out = left_out_of(
            kernel, "not in the lock file (not downloadable when it was written)"
        )
        return Pinned(
            DebianKernel(spec, kernel[0], tuple(kernel[1:]), left_out),
            tuple(Package(**p) for p in entry["userspace"]),
        )

    def pin(
        self,
        arch: str,
        spec: str,
        *,
        release: str,
        kernel: tuple[Package, ...],
        userspace: tuple[Package, ...],
    ) -> None:
        self.entries[self.key(arch, spec)] = {
            "release": release,
            "kernel": [asdict(p) for p in kernel],
            "userspace": [asdict(p) for p in sorted(userspace, key=lambda p: p.name)],
        }

    @staticmethod
    def qemu_key(arch: str, spec: str) -> str:
        return f"{QEMU} {arch} {spec}"

    def pinned_qemu(self, arch: str, spec: str) -> tuple[Package, ...] | None:
        """The pinned packages of a debian: QEMU spec; None for the host's or a path.

        :raises UsageError: the lock does not pin it.
        """
        if not spec.startswith("debian:"):
            return None
        entry = self.entries.get(self.qemu_key(arch, spec))
        if entry is None:
            raise UsageError(
                f"QEMU {spec} ({arch}) is not in {self.path}: run memhp image lock "
                f"--arch {arch} --qemu {spec} (or run without --locked)"
            )
        return tuple(Package(**p) for p in entry["packages"])

    def pin_qemu(self, arch: str, spec: str, build: str, packages: tuple[Package, ...]) -> None:
        self.entries[self.qemu_key(arch, spec)] = {
            "build": build,
            "packages": [asdict(p) for p in sorted(packages, key=lambda p: p.name)],
        }

    def save(self) -> None:
        doc = {"version": VERSION, "targets": dict(sorted(self.entries.items()))}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(self.path)


def load(path: Path, *, missing_ok: bool = False) -> Lock:
    """Read a lock file; UsageError (what to do) when it is absent or not memhp's."""
    if not path.is_file():
        if missing_ok:
            return Lock(path)
        raise UsageError(f"{path} does not exist: write it with memhp image lock")
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, not {VERSION}")
        lock = Lock(path, dict(doc["targets"]))
        for key in lock.entries:  # every entry must read back
            if key.startswith(f"{QEMU} "):
                arch, _, spec = key.removeprefix(f"{QEMU} ").partition(" ")
                lock.pinned_qemu(arch, spec)
            else:
                arch, _, spec = key.partition(" ")
                lock.pinned(arch, spec)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a memhp lock file ({exc}): write it again with memhp image lock"
        ) from None
    return lock
