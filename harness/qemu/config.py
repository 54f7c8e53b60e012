"""What a QEMU guest is: its configuration, and the QEMU command line that makes it (the
process that runs it is harness.qemu.machine). Frozen: a configuration is a value, and part
of a saved boot's key (harness.qemu.snapshots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.arch import Arch, GiB
from harness.images.image import Image
from harness.qemu.accel import Accel
from harness.qemu.builds import HOST, QemuBuild, resolve


class ColdPlug(Protocol):
    """A device on QEMU's command line; see harness.hotplug.coldplug. One whose class sets
    ``fast_firmware = False`` needs the default firmware (it does what qboot does not)."""

    def qemu_args(self, workdir: Path, arch: Arch) -> list[str]: ...


@dataclass(frozen=True)
class MachineConfig:
    arch: Arch
    image: Image
    cmdline: tuple[str, ...] = ()  # extra kernel parameters
    memory: int = 1 * GiB  # boot RAM
    maxmem: int = 16 * GiB
    slots: int = 8  # DIMM slots
    smp: int = 2
    accel: Accel | None = None  # None: choose_accel()
    qemu: QemuBuild | None = None  # None: the host's (harness.qemu.builds)
    qemu_args_extra: tuple[str, ...] = ()  # anything else for QEMU's command line
    coldplug: tuple[ColdPlug, ...] = ()  # memory devices present from the start
    boot_timeout: float | None = None  # None: the arch's TCG bound (KVM: a third)
    labels: dict[str, str] = field(default_factory=dict)  # free-form, for reports
    restore_from: Path | None = None  # a saved boot (harness.qemu.snapshots) to start from
    numa: tuple[int, ...] = ()  # boot RAM of each NUMA node (0: memoryless); (): no NUMA
    reboot: bool = False  # a guest reboot (or system_reset) restarts it instead of ending QEMU
    # A guest that sleeps (S3) and wakes: QEMU's default firmware and a kernel the firmware
    # boots (qboot, and a kernel entered through PVH, are booted anew by a wakeup).
    sleeps: bool = False

    def uses_fast_firmware(self) -> bool:
        return not self.sleeps and all(getattr(d, "fast_firmware", True) for d in self.coldplug)

    def boot_memory(self) -> int:
        return sum(self.numa) if self.numa else self.memory

    def numa_args(self) -> list[str]:
        """-numa nodes: node i gets numa[i] bytes (none: memoryless) and CPUs round-robin
        over the nodes that have memory."""
        if not self.numa:
            return []
        with_memory = [i for i, size in enumerate(self.numa) if size]
        cpus: dict[int, list[int]] = {i: [] for i in range(len(self.numa))}
        for cpu in range(self.smp):
            cpus[with_memory[cpu % len(with_memory)]].append(cpu)
        args = []
        for node, size in enumerate(self.numa):
            spec = f"node,nodeid={node}"
            if size:
                args += ["-object", f"memory-backend-ram,id=numa{node},size={size}"]
                spec += f",memdev=numa{node}"
            spec += "".join(f",cpus={c}" for c in cpus[node])
            args += ["-numa", spec]
        return args

    def kernel_cmdline(self) -> str:
        # panic=-1 + -no-reboot: a panicking guest makes QEMU exit at once.
        base = [f"console={self.arch.console}", "panic=-1", "log_buf_len=8M", "printk.time=1"]
        return " ".join(base + list(self.cmdline))

    def firmware_args(self, qemu: QemuBuild) -> list[str]:
        """-bios: the firmware the machine needs (UEFI on arm64, resolved with its QEMU), else
        the fast one where nothing asks for the default."""
        if self.arch.firmware is not None:
            if qemu.firmware is None:
                raise RuntimeError(f"{qemu.label} was resolved without {self.arch.name}'s firmware")
            return ["-bios", str(qemu.firmware)]
        if self.uses_fast_firmware():
            return self.arch.firmware_args(qemu.datadir or Path("/usr/share/qemu"))
        return []

    def qemu_build(self) -> QemuBuild:
        """The QEMU this guest runs on (the host's when none was given)."""
        return self.qemu or resolve(HOST, self.arch)

    def qemu_args(
        self,
        *,
        qemu: QemuBuild,
        name: str,
        accel: Accel,
        qmp_fd: int,
        console_fd: int,
        ssh_port: int,
        workdir: Path,
    ) -> list[str]:
        """QEMU's arguments (after the binary): the machine, its memory and NUMA nodes, the
        kernel and initramfs, QMP and the console on inherited sockets, the SSH forward on
        127.0.0.1, the arch's PCIe ports for hot-plugged PCI devices, cold-plugged devices."""
        arch = self.arch
        return [
            "-name",
            name,
            "-machine",
            arch.machine,
            *accel.qemu_args(arch),
            *(("-L", str(qemu.datadir)) if qemu.datadir else ()),
            *self.firmware_args(qemu),
            "-smp",
            str(self.smp),
            "-m",
            f"{self.boot_memory() // (1 << 20)}M,slots={self.slots},"
            f"maxmem={self.maxmem // (1 << 20)}M",
            *self.numa_args(),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            *(() if self.reboot else ("-no-reboot",)),
            "-kernel",
            str(self.image.firmware_kernel if self.sleeps else self.image.kernel),
            "-initrd",
            str(self.image.initramfs),
            "-append",
            self.kernel_cmdline(),
            "-chardev",
            f"socket,id=mon,fd={qmp_fd}",
            "-mon",
            "chardev=mon,mode=control",
            "-chardev",
            f"socket,id=con,fd={console_fd}",
            "-serial",
            "chardev:con",
            "-netdev",
            f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
            "-device",
            f"{arch.net_device},netdev=net0",
            *(a for port in arch.hotplug_ports for a in ("-device", port)),
            *(a for dev in self.coldplug for a in dev.qemu_args(workdir, arch)),
            *self.qemu_args_extra,
            *(("-incoming", "defer") if self.restore_from is not None else ()),
        ]
