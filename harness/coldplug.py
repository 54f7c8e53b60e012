"""Memory devices on QEMU's command line (present at boot). Frozen, so a test's boot
configuration can key the guest pool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VirtioMemSpec:
    id: str
    max_size: int
    requested: int = 0

    def qemu_args(self, workdir: Path) -> list[str]:
        return ["-object", f"memory-backend-ram,id={self.id}-mem,size={self.max_size}",
                "-device", f"virtio-mem-pci,id={self.id},memdev={self.id}-mem,"
                           f"requested-size={self.requested}"]


@dataclass(frozen=True)
class NvdimmSpec:
    id: str
    size: int
    label_size: int | None = None

    def qemu_args(self, workdir: Path) -> list[str]:
        path = workdir / f"{self.id}.img"
        with path.open("wb") as f:
            f.truncate(self.size)  # sparse backing file, private to this machine
        label = f",label-size={self.label_size}" if self.label_size is not None else ""
        return ["-object", f"memory-backend-file,id={self.id}-mem,mem-path={path},"
                           f"size={self.size},share=on",
                "-device", f"nvdimm,id={self.id},memdev={self.id}-mem{label}"]
