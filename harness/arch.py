"""Architecture profiles: every difference between x86-64 q35, ppc64le pseries, arm64 virt
and s390x s390-ccw-virtio lives here.

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
EM_S390 = 22
EM_AARCH64 = 183
ET_REL = 1  # e_type of a relocatable object (a .ko); a vmlinux is ET_EXEC, or ET_DYN (ppc64)
# Where each kernel image format says what it is (the bytes kernel_kind needs).
KERNEL_HEAD = 0x10010
ARM64_MAGIC = (0x38, b"ARM\x64")  # Documentation/arch/arm64/booting.rst: the Image header
S390_MAGIC = (0x10008, b"S390EP")  # arch/s390/boot/head.S: the IPL entry's marker


@dataclass(frozen=True)
class Firmware:
    """Firmware a machine cannot boot without, from a Debian package (architecture all),
    fetched through memhp's private apt configuration like a QEMU build."""

    package: str
    path: str  # inside the package
    suite: str  # the suite to take it from, and why
    why: str


@dataclass(frozen=True)
class SavedBoots:
    """Saved boots on the QEMUs where restoring works: those older than ``fixed_in`` once
    the restored guest ran ``after_restore``, and those from ``safe_from`` on as they are."""

    fixed_in: tuple[int, int]
    after_restore: str
    safe_from: tuple[int, int] | None = None  # None: no newer QEMU restores safely

    def allows(self, qemu_version: str) -> bool:
        v = _version(qemu_version)
        return v < self.fixed_in or (self.safe_from is not None and v >= self.safe_from)

    def fixup(self, qemu_version: str) -> str | None:
        """What the guest runs right after a restore on this QEMU (None: nothing)."""
        return self.after_restore if _version(qemu_version) < self.fixed_in else None


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a QEMU version such as "7.2.22"."""
    major, minor = [*text.split("."), "0"][:2]
    return int(major), int(minor)


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
    # The guest's NIC (SSH). No option ROM: the kernel comes from -kernel, nothing netboots,
    # and a private QEMU build's -L may not hold efi-virtio.rom (7.2's data package does not).
    net_device: str = "virtio-net-pci,romfile="
    # Kernel options that make the guest take a hot-plugged DIMM (needs_kernel("dimm")).
    dimm_kconfig: tuple[str, ...] = ()
    # The QEMU spec a target gets when none is given (the host's QEMU may have no memory
    # devices for this machine at all).
    default_qemu: str = "host"
    # Firmware the machine must boot through (-bios), e.g. UEFI for ACPI on arm64.
    firmware: Firmware | None = None
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
    # Fresh guests may start from a saved boot (harness.qemu.snapshots); SavedBoots: only
    # on some QEMUs, and with a command the restored guest runs first.
    saved_boots: bool | SavedBoots = True
    # -device specs added at boot so PCI devices (virtio-mem-pci) can be hot-plugged later.
    hotplug_ports: tuple[str, ...] = ()
    # NVDIMM on this machine: the device model, whether QEMU needs a label area and uuid
    # (spapr), and its size granularity.
    nvdimm_driver: str = "nvdimm"
    nvdimm_label_size: int | None = None
    nvdimm_align: int = 2 * MiB
    # Kernel options a guest needs to see an NVDIMM at all.
    nvdimm_kconfig: tuple[str, ...] = ("LIBNVDIMM",)
    # A NUMA node the firmware names but gives no memory or CPU is online from boot:
    # arm64's numa_register_nodes() (drivers/base/arch_numa.c) onlines every node the SRAT
    # parsed, where x86 onlines a node when memory or a CPU arrives.
    memoryless_nodes_online_at_boot: bool = False
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
        head = _head(path) if path.is_file() else b""
        if not head:
            raise UsageError(f"kernel file {path} is missing or empty")
        kind = kernel_kind(head)
        if kind != self.name:
            raise UsageError(
                f"{path} is a {kind or 'unrecognised'} kernel, not {self.name}: "
                f"pass --memhp-arch {kind} or a {self.name} kernel"
                if kind
                else f"{path} is not a kernel image this harness knows ({self.name} wants "
                f"{KERNEL_FORMATS[self.name]})"
            )

    def supports(self, device: str) -> bool:
        return device in self.devices

    def qemu_type(self, kind: str) -> str:
        """The QEMU device type of a kind of memory device on this machine ("virtio-mem" ->
        virtio-mem-pci or virtio-mem-ccw, "nvdimm" -> nvdimm or spapr-nvdimm)."""
        return {"virtio-mem": self.virtio_mem_driver, "nvdimm": self.nvdimm_driver}.get(kind, kind)

    def firmware_args(self, datadir: Path) -> list[str]:
        """-bios for the fast firmware, where ``datadir`` (the QEMU's own) has it."""
        if self.fast_firmware and (datadir / self.fast_firmware).is_file():
            return ["-bios", str(datadir / self.fast_firmware)]
        return []


KERNEL_FORMATS = {
    "x86_64": "a bzImage or an ELF vmlinux",
    "ppc64le": "an ELF vmlinux",
    "arm64": "an arm64 Image (arch/arm64/boot/Image)",
    "s390x": "an s390x bzImage (arch/s390/boot/bzImage)",
}


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(KERNEL_HEAD)


def _at(head: bytes, magic: tuple[int, bytes]) -> bool:
    offset, value = magic
    return head[offset : offset + len(value)] == value


def kernel_kind(head: bytes) -> str | None:
    """The arch a kernel image is for, from its first KERNEL_HEAD bytes; None if it is none."""
    # x86 boot protocol: "HdrS" at 0x202 (Documentation/arch/x86/boot.rst).
    if len(head) >= 0x206 and head[0x202:0x206] == b"HdrS":
        return "x86_64"
    if _at(head, ARM64_MAGIC):
        return "arm64"
    if _at(head, S390_MAGIC):
        return "s390x"
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        little = head[5] == 1
        e_type, machine = struct.unpack_from("<HH" if little else ">HH", head, 16)
        if e_type == ET_REL:  # a kernel module (.ko), not a kernel
            return None
        if machine == EM_X86_64:
            return "x86_64"
        if machine == EM_PPC64:
            return "ppc64le" if little else "big-endian ppc64 (unsupported: use ppc64le)"
        if machine == EM_AARCH64:
            return "arm64"
        if machine == EM_S390:
            return "s390x"
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
    dimm_kconfig=("ACPI_HOTPLUG_MEMORY",),  # drivers/acpi/acpi_memhotplug.c: PNP0C80 devices
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

# Make every vCPU of a ppc64le guest take a decrementer interrupt at once, which reprograms
# DEC for its next timer event: a trace_marker write wakes a waiting per-CPU trace_pipe
# reader through the ring buffer's irq_work, queued on the writing CPU, and queueing an
# irq_work sets DEC to 1 (arch_irq_work_raise, arch/powerpc/kernel/time.c). Needs tracefs.
REARM_DECREMENTERS = (
    "T=/sys/kernel/tracing; [ -e $T/trace_marker ] || mount -t tracefs nodev $T || exit; "
    "for c in $(seq 0 $(($(nproc --all) - 1))); do "
    "cat $T/per_cpu/cpu$c/trace_pipe > /dev/null & r=$!; "
    "i=0; until grep -q ring_buffer_wait /proc/$r/wchan || [ $i -ge 500 ]; do i=$((i+1)); done; "
    'taskset -c $c sh -c "echo memhp-rearm > $T/trace_marker"; '
    "kill $r; wait $r; done; true"
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
    dimm_kconfig=("MEMORY_HOTPLUG",),  # arch/powerpc/platforms/pseries/hotplug-memory.c
    # pseries DLPAR: dlpar_add_lmb() -> dlpar_online_lmb() onlines each LMB itself.
    firmware_onlines_dimms=True,
    adds_per_block=True,
    # One host thread per vCPU, as pseries always ran here: the int3 artifact that single
    # threading avoids is x86's (text_poke_bp); powerpc patches text without a breakpoint.
    tcg_thread="multi",
    # QEMU's TCG ppc migrates no decrementer before commit 578912ad7312 ("target/ppc:
    # Migrate DECR SPR") (in v8.2; Debian's 7.2.22 has the rest of that series, not it):
    # restored vCPUs keep the fresh QEMU's DEC timer, not the guest's, and one whose tick
    # was running when saved (its next expiry then overdue, so no later hrtimer reprograms
    # DEC) may get no timer interrupt again: "rcu_sched kthread timer wakeup didn't
    # happen", hard LOCKUP, sleeps that never end. 1 in ~50 restored 6.1 scenarios here;
    # 4 of 7 restores of boots saved with vCPU 1 busy (bench/restore_stalls.py busy=1).
    # Waking each vCPU (taskset) does not help (2 of 3: a running tick is not restarted);
    # REARM_DECREMENTERS after each restore does (0 of 16 busy, 0 of 56 idle, Debian 6.1
    # and 6.12), QemuMachine.restore booting instead where SSH and it took over 10 s.
    # 10.0.13 (Debian) leaves vCPU 1 in H_CEDE on every restore (13 of 13: hard LOCKUP
    # after 16 s, timers dead after); 11.1.3: 0 of 13, too few yet. So: 7.2 only.
    saved_boots=SavedBoots(fixed_in=(8, 2), after_restore=REARM_DECREMENTERS),
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
        "s3": "QEMU's pseries has no suspend to RAM: only x86's ACPI PM registers for "
        "wakeup (qemu_register_wakeup_support)",
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

# UEFI for arm64 virt: QEMU wires DIMMs and NVDIMMs through the ACPI GED, which exists only
# when firmware hands QEMU's ACPI tables to the kernel ("memory hotplug is not enabled:
# missing acpi-ged device" without it; commit cff51ac978c4 ("hw/arm/virt: Enable device
# memory cold/hot plug with ACPI boot") (in QEMU v4.2.0)). -kernel still loads the kernel:
# EDK2 boots it from fw_cfg.
ARM64_UEFI = Firmware(
    package="qemu-efi-aarch64",
    path="usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
    # bookworm's 2022.11 reports the 64 MiB NOR flash at 0x04000000 to the kernel as RAM with
    # no NUMA node ("NUMA: no nodes coverage for 64MB", then "Faking a node"): trixie's
    # 2025.02 maps it as MMIO. Architecture all, no dependencies: it unpacks anywhere.
    suite="trixie",
    why="UEFI: ACPI (and with it the GED that hot-plugs DIMMs) on arm64 virt",
)

ARM64 = Arch(
    name="arm64",
    debian_arch="arm64",
    triplet="aarch64-linux-gnu",
    uname_machine="aarch64",
    qemu_binary="qemu-system-aarch64",
    qemu_package="qemu-system-arm",
    machine="virt,gic-version=3,nvdimm=on",
    # pauth-impdef: QEMU's own pointer-authentication algorithm, far cheaper under TCG than
    # the architected QARMA one -cpu max uses by default.
    cpu="max,pauth-impdef=on",
    console="ttyAMA0",  # PL011, described by ACPI's SPCR
    default_flavour="arm64",
    # The generic flavour has no ACPI_HOTPLUG_MEMORY (DIMM scenarios skip, naming it);
    # cloud-arm64 has it.
    default_kernels=("debian:6.12", "debian:6.1/cloud", "debian:6.12/cloud", "debian:7.2/cloud"),
    flavours={"cloud": "cloud-arm64", "rt": "rt-arm64", "16k": "arm64-16k"},
    # Blocks are 128 MiB with 4K and 16K pages (SECTION_SIZE_BITS 27 since commit
    # f0b13ee23241 ("arm64/sparsemem: reduce SECTION_SIZE_BITS") (in v5.12)).
    dimm_align=128 * MiB,
    devices=frozenset({"pc-dimm", "nvdimm"}),
    acpi_memory_hotplug=True,  # the GED's ACPI_DEVICE_OST, as on q35
    dimm_kconfig=("ACPI_HOTPLUG_MEMORY",),
    firmware=ARM64_UEFI,
    hotplug_ports=tuple(f"pcie-root-port,id=memhp-port{i},chassis={i},slot={i}" for i in (1, 2)),
    nvdimm_kconfig=("LIBNVDIMM", "ACPI_NFIT"),
    memoryless_nodes_online_at_boot=True,
    scenario_cmdline=("memhp_default_state=offline",),
    lacks={
        "isa-hole": "arm64 virt has no ISA hole, and its boot memory can never go offline "
        '(prevent_bootmem_remove_notifier, commit bbd6ec605c0f ("arm64/mm: Enable memory '
        'hot remove") (in v5.7))',
        "cxl": "memhp's CXL set-up is q35's (arm64 virt has CXL only from QEMU 10.1)",
        "s3": "QEMU's arm64 virt has no suspend to RAM: only x86's ACPI PM registers for "
        "wakeup (qemu_register_wakeup_support)",
    },
)

# s390x: no DIMMs at all; memory devices are virtio-mem-ccw only, from commit aa910c20ec5f
# ("s390x: virtio-mem support") (in QEMU v10.0.0), with kernel commit 38968bcdcc1d
# ("virtio-mem: s390 support") (in v6.13). The host's QEMU 7.2 has no memory device for
# s390-ccw-virtio, so a target takes Debian's QEMU 10.0 unless told otherwise.
S390X = Arch(
    name="s390x",
    debian_arch="s390x",
    triplet="s390x-linux-gnu",
    uname_machine="s390x",
    qemu_binary="qemu-system-s390x",
    qemu_package="qemu-system-s390x",  # trixie on; bookworm's 7.2 is in qemu-system-misc
    machine="s390-ccw-virtio",
    cpu="max",
    console="ttysclp0",  # -serial is the SCLP VT220 console
    default_flavour="s390x",
    default_kernels=("debian:6.12", "debian:7.2"),
    default_qemu="debian:10.0",
    virtio_mem_driver="virtio-mem-ccw",
    net_device="virtio-net-ccw",
    dimm_align=128 * MiB,
    scenario_cmdline=("memhp_default_state=offline",),
    lacks={
        "isa-hole": "s390x has no ISA hole: memory0 is ordinary RAM",
        "numa": "s390x has no NUMA (QEMU's s390-ccw-virtio takes no -numa, and Debian's "
        "kernels have CONFIG_NUMA unset)",
        "cxl": "QEMU models CXL host bridges on q35 and arm64 virt, not on s390-ccw-virtio",
        "s3": "QEMU's s390-ccw-virtio has no suspend to RAM: only x86's ACPI PM registers for "
        "wakeup (qemu_register_wakeup_support)",
    },
)

ARCHES: dict[str, Arch] = {a.name: a for a in (X86_64, PPC64LE, ARM64, S390X)}


def get_arch(name: str) -> Arch:
    try:
        return ARCHES[name]
    except KeyError:
        raise UsageError(f"unknown arch '{name}': use one of {', '.join(ARCHES)}") from None


def host_arch() -> Arch | None:
    machine = platform.machine()
    return next((a for a in ARCHES.values() if a.uname_machine == machine), None)
