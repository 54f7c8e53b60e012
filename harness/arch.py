"""Architecture profiles: every difference between x86-64 and ppc64le lives here.

The rest of the harness asks the profile (which QEMU, which machine, which console, how big a
DIMM may be, which devices exist) instead of testing the arch name itself.
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError

MiB = 1 << 20
GiB = 1 << 30

# ELF e_machine values, to tell a kernel of the wrong architecture early.
EM_X86_64 = 62
EM_PPC64 = 21
ET_REL = 1  # e_type of a relocatable object (a .ko); a vmlinux is ET_EXEC, or ET_DYN (ppc64)


@dataclass(frozen=True, eq=False)  # profiles are singletons: identity is equality
class Arch:
    name: str  # memhp's name, as given to --memhp-arch
    debian_arch: str  # dpkg architecture of the guest packages
    triplet: str  # multiarch library directory
    uname_machine: str  # `uname -m` of a host that could run this guest under KVM
    qemu_binary: str
    qemu_package: str  # the Debian package that ships qemu_binary
    machine: str  # -machine value
    cpu: str  # -cpu value under TCG
    console: str  # guest console device for console=
    default_flavour: str  # Debian flavour suffix of the generic kernel
    default_kernels: tuple[str, ...]  # the matrix when no --memhp-kernel is given
    # (kernel, QEMU) targets the default matrix adds: newer QEMU on the newest kernel line
    default_qemu_targets: tuple[tuple[str, str], ...] = ()
    flavours: dict[str, str] = field(default_factory=dict)  # spec suffix -> Debian flavour
    dimm_align: int = 128 * MiB  # QEMU's granularity for pc-dimm sizes
    # DIMM-like memory devices the machine wires (pc-dimm, nvdimm).
    devices: frozenset[str] = frozenset()
    # The virtio-mem device type for this machine's bus; whether a QEMU has it is asked of
    # that QEMU (needs_qemu("virtio-mem"), harness.qemu.facts).
    virtio_mem_driver: str = "virtio-mem-pci"
    # The guest acknowledges DIMM plug/unplug through ACPI _OST (ACPI_DEVICE_OST events).
    acpi_memory_hotplug: bool = False
    # The kernel onlines hot-added DIMMs itself, whatever auto_online_blocks says.
    firmware_onlines_dimms: bool = False
    # A DIMM is added memory block by memory block (pseries DLPAR: dlpar_add_lmb), not whole.
    adds_per_block: bool = False
    # Faster firmware than the default (a file of QEMU's data directory, for -bios), used
    # where the QEMU has it.
    fast_firmware: str | None = None
    # Boot the decompressed ELF vmlinux through its PVH entry (skips the bzImage stub).
    pvh_boot: bool = False
    boot_timeout_tcg: float = 90.0
    # TCG threading (harness.qemu.accel): "single" runs a guest's vCPUs in one host thread.
    tcg_thread: str = "single"
    # Fresh guests may start from a saved boot (harness.qemu.snapshots).
    saved_boots: bool = True
    # -device specs added at boot so PCI devices (virtio-mem-pci) can be hot-plugged later.
    hotplug_ports: tuple[str, ...] = ()
    # NVDIMM on this machine: the device model, whether QEMU needs a label area and uuid
    # (spapr), and its size granularity.
    nvdimm_driver: str = "nvdimm"
    nvdimm_label_size: int | None = None
    nvdimm_align: int = 2 * MiB
    # Kernel options a guest needs to see an NVDIMM at all.
    nvdimm_kconfig: tuple[str, ...] = ("LIBNVDIMM",)
    # Kernel parameters the scenarios boot with unless a test asks otherwise.
    scenario_cmdline: tuple[str, ...] = ()
    # Guest properties some scenarios rely on that this machine does not have: name -> why.
    lacks: dict[str, str] = field(default_factory=dict)
    # ... and what it lacks only under TCG (QEMU's emulation, not the hardware).
    tcg_lacks: dict[str, str] = field(default_factory=dict)

    def lacking(self, prop: str, accel: str) -> str | None:
        """Why this machine cannot give ``prop`` under ``accel``; None if it can."""
        return self.lacks.get(prop) or (self.tcg_lacks.get(prop) if accel == "tcg" else None)

    def flavour(self, suffix: str | None) -> str:
        """Debian's flavour name for a spec suffix such as 'rt' or '64k'."""
        if not suffix:
            return self.default_flavour
        try:
            return self.flavours[suffix]
        except KeyError:
            known = ", ".join(sorted(self.flavours)) or "none"
            raise UsageError(
                f"kernel flavour '/{suffix}' does not exist for {self.name} (known: {known})"
            ) from None

    def check_kernel(self, path: Path) -> None:
        """Raise UsageError if the kernel file is not one this arch's QEMU can boot."""
        head = path.read_bytes()[:0x210] if path.is_file() else b""
        if not head:
            raise UsageError(f"kernel file {path} is missing or empty")
        kind = kernel_kind(head)
        if kind != self.name:
            raise UsageError(
                f"{path} is a {kind or 'unrecognised'} kernel, not {self.name}: "
                f"pass --memhp-arch {kind} or a {self.name} kernel"
                if kind
                else f"{path} is not a kernel image this harness knows ({self.name} wants "
                f"{'a bzImage' if self.name == 'x86_64' else 'an ELF vmlinux'})"
            )

    def supports(self, device: str) -> bool:
        return device in self.devices

    def firmware_args(self, datadir: Path) -> list[str]:
        """-bios for the fast firmware, where ``datadir`` (the QEMU's own) has it."""
        if self.fast_firmware and (datadir / self.fast_firmware).is_file():
            return ["-bios", str(datadir / self.fast_firmware)]
        return []


def kernel_kind(head: bytes) -> str | None:
    """The arch a kernel image is for, from its first 0x210 bytes; None if it is none."""
    # x86 boot protocol: "HdrS" at 0x202 (Documentation/arch/x86/boot.rst).
    if len(head) >= 0x206 and head[0x202:0x206] == b"HdrS":
        return "x86_64"
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        little = head[5] == 1
        e_type, machine = struct.unpack_from("<HH" if little else ">HH", head, 16)
        if e_type == ET_REL:  # a kernel module (.ko), not a kernel
            return None
        if machine == EM_X86_64:
            return "x86_64"
        if machine == EM_PPC64:
            return "ppc64le" if little else "big-endian ppc64 (unsupported: use ppc64le)"
    return None


X86_64 = Arch(
    name="x86_64",
    debian_arch="amd64",
    triplet="x86_64-linux-gnu",
    uname_machine="x86_64",
    qemu_binary="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    # nvdimm=on costs nothing when unused and lets later scenarios plug NVDIMMs.
    machine="q35,nvdimm=on",
    cpu="max",
    console="ttyS0",
    default_flavour="amd64",
    default_kernels=("debian:6.1", "debian:6.12", "debian:7.2"),
    default_qemu_targets=(("debian:7.2", "debian:10.0"),),
    flavours={"cloud": "cloud-amd64", "rt": "rt-amd64"},
    dimm_align=128 * MiB,
    devices=frozenset({"pc-dimm", "nvdimm"}),
    acpi_memory_hotplug=True,
    pvh_boot=True,
    nvdimm_kconfig=("LIBNVDIMM", "ACPI_NFIT"),
    # q35 hot-plugs PCIe devices only into a free root port that existed at boot.
    hotplug_ports=tuple(f"pcie-root-port,id=memhp-port{i},chassis={i},slot={i}" for i in (1, 2)),
    # Hot-added memory waits, offline, until the scenario onlines it.
    scenario_cmdline=("memhp_default_state=offline",),
    # qboot (Debian's qemu-system-data) boots ~0.3-0.5 s sooner than SeaBIOS under TCG and
    # still hands QEMU's ACPI tables (memory hotplug) to the kernel.
    fast_firmware="qboot.rom",
)

PPC64LE = Arch(
    name="ppc64le",
    debian_arch="ppc64el",
    triplet="powerpc64le-linux-gnu",
    uname_machine="ppc64le",
    qemu_binary="qemu-system-ppc64",
    qemu_package="qemu-system-ppc",
    # x-vof: QEMU's minimal firmware, ~1.7 s to /init instead of 6-9 s with SLOF.
    machine="pseries,x-vof=on",
    cpu="power9",
    console="hvc0",
    default_flavour="powerpc64le",
    # Debian's 7.x ppc64el builds live in trixie-backports only, whose ppc64el index the
    # mirror often serves mid-sync.
    default_kernels=("debian:6.1", "debian:6.12"),
    flavours={"64k": "powerpc64le-64k"},
    # "Hotplugged memory size must be a multiple of 256 MB" (hw/ppc/spapr.c).
    dimm_align=256 * MiB,
    # spapr NVDIMM needs PAPR_SCM in the guest.
    devices=frozenset({"pc-dimm", "nvdimm"}),
    # pseries DLPAR: dlpar_add_lmb() -> dlpar_online_lmb() onlines each LMB itself.
    firmware_onlines_dimms=True,
    adds_per_block=True,
    # One host thread per vCPU, as pseries always ran here: the int3 artifact that single
    # threading avoids is x86's (text_poke_bp); powerpc patches text without a breakpoint.
    tcg_thread="multi",
    # No saved boots: in guests restored from one (QEMU 7.2, TCG, Debian 6.1), the second
    # vCPU, idle in snooze_loop, sometimes went 21 s without a decrementer interrupt
    # ("rcu_sched kthread timer wakeup didn't happen for 5215 jiffies", always ~21 s after
    # the restore), so the next wait ran out: 1 in ~50 restored 6.1 scenarios, under
    # thread=single and multi alike, never in a booted guest.
    saved_boots=False,
    # spapr NVDIMMs: a label area and a uuid, data a multiple of 256 MiB (hw/ppc/spapr_nvdimm.c).
    nvdimm_driver="spapr-nvdimm",
    nvdimm_label_size=128 * 1024,
    nvdimm_align=256 * MiB,
    nvdimm_kconfig=("LIBNVDIMM", "PAPR_SCM"),
    # DLPAR onlines new LMBs whatever the policy. With online_movable each LMB is onlined
    # at add time, so the next LMB's memmap cannot land in it (it would with DLPAR's own
    # Normal onlining, and offlining that LMB then fails with EBUSY on 6.12).
    scenario_cmdline=("memhp_default_state=online_movable",),
    lacks={
        "isa-hole": "pseries has no ISA hole: memory0 is ordinary RAM",
        "nvdimm-subsection": "spapr NVDIMMs come in 256 MiB multiples, a ppc64 section is "
        "16 MiB: two cannot share one",
        "normal-only-hotplugged": "pseries boot RAM is ZONE_NORMAL too, so kernel allocations "
        "do not go to a hot-added Normal block first and nothing reliably pins it",
        "cxl": "QEMU models CXL host bridges on q35 and arm64 virt, not on pseries",
    },
    tcg_lacks={
        # arch/powerpc/lib/pmem.c flushes with dcbstps/dcbfps (dcbf L=6/4, "powerpc/pmem: Add
        # new instructions for persistent storage and sync", v5.10) on every ISA 2.07S+ CPU;
        # POWER8/9 hardware runs them as dcbf, QEMU's TCG (7.2 and 10.0: dcbf's invalid-bits
        # mask 0x03C00001) raises an illegal instruction and the guest Oopses.
        "pmem-writes": "QEMU's TCG rejects dcbstps/dcbfps, which the kernel's pmem writes "
        "use on POWER (Oops in memcpy_flushcache); needs KVM on POWER hardware",
    },
)

ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64, PPC64LE)}


def get_arch(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise UsageError(f"unknown arch '{name}': use one of {', '.join(ARCHES)}") from None


def host_arch() -> Arch | None:
    machine = platform.machine()
    return next((a for a in ARCHES.values() if a.uname_machine == machine), None)
