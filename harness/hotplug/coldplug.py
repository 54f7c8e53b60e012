"""Memory devices on QEMU's command line (present at boot). Frozen, so a test's boot
configuration can key the guest pool."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from harness.arch import Arch


@dataclass(frozen=True)
class VirtioMemSpec:
    id: str
    max_size: int
    requested: int = 0

    def qemu_args(self, workdir: Path, arch: Arch) -> list[str]:
        return [
            "-object",
            f"memory-backend-ram,id={self.id}-mem,size={self.max_size}",
            "-device",
            f"virtio-mem-pci,id={self.id},memdev={self.id}-mem,requested-size={self.requested}",
        ]


@dataclass(frozen=True)
class NvdimmSpec:
    id: str
    size: int  # data size; the arch's label area (spapr) comes on top

    def qemu_args(self, workdir: Path, arch: Arch) -> list[str]:
        label = arch.nvdimm_label_size
        total = self.size + (label or 0)
        path = workdir / f"{self.id}.img"
        with path.open("wb") as f:
            f.truncate(total)  # sparse backing file, private to this machine
        extra = f",label-size={label},uuid={uuid.uuid4()}" if label is not None else ""
        return [
            "-object",
            f"memory-backend-file,id={self.id}-mem,mem-path={path},size={total},share=on",
            "-device",
            f"{arch.nvdimm_driver},id={self.id},memdev={self.id}-mem{extra}",
        ]
