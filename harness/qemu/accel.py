"""Pick the QEMU accelerator: KVM only where it really works, TCG otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.arch import Arch, host_arch
from harness.errors import UsageError

ENV = "MEMHP_ACCEL"
ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str  # why this one: shown in logs and reports

    def qemu_args(self, arch: Arch) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        # thread=multi: one host thread per vCPU; without it 2 vCPUs share one core.
        return ["-accel", "tcg,thread=multi", "-cpu", arch.cpu]


def kvm_problem(arch: Arch, cpuinfo: str | None = None) -> str | None:
    """Why KVM cannot run this arch's guests here, or None if it can."""
    host = host_arch()
    if host is None or host.name != arch.name:
        return f"host is {host.name if host else 'unknown'}, guest is {arch.name}"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    if arch.name == "x86_64":
        # A /dev/kvm backed by a paravirtual hypervisor (e.g. kvm_pvm) opens fine but
        # hangs stock kernels after "Probing EDD"; real KVM needs VMX or SVM.
        if cpuinfo is None:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        flags = set()
        for line in cpuinfo.splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
        if not flags & {"vmx", "svm"}:
            return "/dev/kvm exists but the CPU has no vmx/svm (paravirtual KVM)"
    return None


def choose_accel(arch: Arch, requested: str | None = None) -> Accel:
    """``requested`` is 'kvm', 'tcg', 'auto' or None (then $MEMHP_ACCEL, then auto)."""
    want = (requested or os.environ.get(ENV) or "auto").lower()
    if want not in ACCELS:
        raise UsageError(f"accelerator '{want}' is not one of {', '.join(ACCELS)}")
    if want == "tcg":
        return Accel("tcg", "requested")
    problem = kvm_problem(arch)
    if want == "kvm":
        if problem:
            raise UsageError(
                f"KVM was requested but cannot be used: {problem}; use --memhp-accel tcg"
            )
        return Accel("kvm", "requested")
    if problem:
        return Accel("tcg", problem)
    return Accel("kvm", "usable /dev/kvm with hardware virtualisation")


def tcg_artifact(error: BaseException) -> str | None:
    """A boot failure that is QEMU's emulation, not the kernel: named, so that only it is
    retried. None for anything else (a kernel that fails to boot must fail)."""
    return None
