"""memhp.lock: every (arch, debian: kernel spec) pinned to exact packages and SHA256s.

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
        for arch_spec in lock.entries:  # every entry must read back
            arch, _, spec = arch_spec.partition(" ")
            lock.pinned(arch, spec)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a memhp lock file ({exc}): write it again with memhp image lock"
        ) from None
    return lock
