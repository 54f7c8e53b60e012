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
            f"{arch.virtio_mem_driver},id={self.id},memdev={self.id}-mem,"
            f"requested-size={self.requested}",
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


@dataclass(frozen=True)
class CxlMemSpec:
    """A CXL type-3 device with volatile memory behind one host bridge and root port, and a
    fixed memory window for it (q35 cxl=on; QEMU 8.1+ for volatile-memdev)."""

    id: str
    size: int
    window: int = 4 << 30
    # qboot does not number the pxb-cxl bus behind its host bridge: SeaBIOS does.
    fast_firmware = False

    def qemu_args(self, workdir: Path, arch: Arch) -> list[str]:
        return [
            "-M",
            f"cxl=on,cxl-fmw.0.targets.0={self.id}-hb,cxl-fmw.0.size={self.window}",
            "-object",
            f"memory-backend-ram,id={self.id}-mem,size={self.size}",
            "-device",
            f"pxb-cxl,bus_nr=12,bus=pcie.0,id={self.id}-hb",
            "-device",
            f"cxl-rp,port=0,bus={self.id}-hb,id={self.id}-rp,chassis=12,slot=12",
            "-device",
            f"cxl-type3,bus={self.id}-rp,volatile-memdev={self.id}-mem,id={self.id}",
            # A region's commit flushes CPU caches, which the kernel refuses on a CPU that
            # says it runs under a hypervisor (cxl_region_invalidate_memregion, x86
            # cpu_cache_has_invalidate_memregion): the emulated CPU does not say so.
            "-cpu",
            "max,hypervisor=off",
        ]
