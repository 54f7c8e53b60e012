"""An image: a kernel plus an initramfs with busybox, dropbear and the scenario modules,
in a directory of the cache whose image.json records what it holds and each file's SHA256."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.images.apt import Package, file_sha256

# What an image directory holds; image.json records each one's SHA256.
IMAGE_FILES = ("kernel", "bzImage", "initramfs.cpio", "config", "id_ed25519", "host_key.pub")


@dataclass(frozen=True)
class Image:
    """A built image, as recorded in its directory's image.json."""

    path: Path
    arch: str
    spec: str
    release: str  # uname -r
    kernel_package: str  # "linux-image-... VERSION (suite)" or the local path
    modules: tuple[str, ...]  # modules the initramfs loads, in order
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA256
    built: float = 0.0  # time.time() of the build
    # The Debian packages it was made of (what a lock file pins).
    kernel_debs: tuple[Package, ...] = ()
    userspace_debs: tuple[Package, ...] = ()
    # A Debian kernel's parts: "kernel" / "config" / "modules" -> "PATH (PACKAGE)", and the
    # dependencies the image was built without, each with why.
    kernel_files: dict[str, str] = field(default_factory=dict)
    left_out: tuple[str, ...] = ()

    @property
    def kernel(self) -> Path:
        return self.path / "kernel"

    @property
    def initramfs(self) -> Path:
        return self.path / "initramfs.cpio"

    @property
    def client_key(self) -> Path:
        return self.path / "id_ed25519"

    @property
    def host_key(self) -> str:
        """The guest's ssh host public key, 'ssh-ed25519 AAAA...'."""
        return (self.path / "host_key.pub").read_text().strip()

    @property
    def firmware_kernel(self) -> Path:
        """The kernel as firmware boots it (x86: the bzImage a PVH-booted image was made
        from), for a guest that must come back from S3 through its firmware."""
        bz = self.path / "bzImage"
        return bz if bz.is_file() else self.kernel

    @property
    def config(self) -> Path | None:
        cfg = self.path / "config"
        return cfg if cfg.exists() else None

    def damage(self) -> str | None:
        """What is wrong with the image's files (missing, changed), or None if intact."""
        if not self.files:
            return "image.json records no checksums (an image of an older memhp)"
        for name, digest in self.files.items():
            path = self.path / name
            if not path.is_file():
                return f"{path} is missing"
            if file_sha256(path) != digest:
                return f"{path} does not match its recorded SHA256 (cut short or changed?)"
        return None

    @classmethod
    def load(cls, path: Path) -> Image:
        meta = json.loads((path / "image.json").read_text())
        return cls(
            path=path,
            arch=meta["arch"],
            spec=meta["spec"],
            release=meta["release"],
            kernel_package=meta["kernel_package"],
            modules=tuple(meta["modules"]),
            files=dict(meta.get("files", {})),
            built=float(meta.get("built", 0)),
            kernel_debs=tuple(Package(**p) for p in meta.get("kernel_debs", [])),
            userspace_debs=tuple(Package(**p) for p in meta.get("userspace_debs", [])),
            kernel_files=dict(meta.get("kernel_files", {})),
            left_out=tuple(meta.get("left_out", [])),
        )
