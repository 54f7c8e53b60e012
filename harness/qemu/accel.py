"""Pick the QEMU accelerator: KVM only where it really works, TCG otherwise.

Under TCG memhp runs a guest's vCPUs in one host thread (``thread=single``). Measured on this
2-core host with two guests booting at a time (bench/boot_failures.py, settings alternated,
QEMU 7.2): ``thread=multi -smp 2`` died with ``Oops: int3`` in 4 of 500 Debian 7.2 boots
(0 of 200 on 6.12/cloud), each time in a built-in jump label or static call the other vCPU
had just finished patching, the trapping byte no longer holding the int3: a vCPU running a
stale translation (QEMU invalidates translations asynchronously across threads).
``thread=single`` failed none of 400 and booted faster under that load (median 4.62 s against
5.57 s on 7.2, 3.78 against 4.83 on 6.12/cloud: with a thread per vCPU, two 2-vCPU guests
oversubscribe 2 cores); ``-smp 1`` was as fast but takes the second vCPU from the guest.
ppc64le pseries keeps the ``thread=multi`` it always ran with: the int3 race above is x86
text patching only (an RCU stall first blamed on ``thread=single`` there came from restored
guests: see ``saved_boots`` in harness/arch.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.arch import Arch, host_arch
from harness.errors import UsageError

ENV = "MEMHP_ACCEL"
ACCELS = ("auto", "kvm", "tcg")
THREAD_ENV = "MEMHP_TCG_THREAD"  # single or multi (default: the arch profile's tcg_thread)


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str  # why this one: shown in logs and reports
    thread: str = ""  # TCG: "single" or "multi"; "" = $MEMHP_TCG_THREAD, else the arch's

    def qemu_args(self, arch: Arch) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        thread = self.thread or os.environ.get(THREAD_ENV) or arch.tcg_thread
        if thread not in ("single", "multi"):
            raise UsageError(f"{THREAD_ENV}={thread}: give single or multi")
        return ["-accel", f"tcg,thread={thread}", "-cpu", arch.cpu]


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


# The Oops header, then its "Code:" line, whose <..> byte is the one at RIP.
_INT3 = re.compile(r"Oops: int3\b.*?\nCode: (?P<code>[0-9a-f <>]+)", re.S)


def tcg_artifact(error: BaseException) -> str | None:
    """A boot failure that is QEMU's emulation, not the kernel: named, so that only it is
    retried; None for anything else (a kernel that fails to boot must fail).

    The one named here: an ``Oops: int3`` whose trapping byte no longer holds the int3.
    An int3 trap leaves RIP after the 0xcc byte; text_poke_bp() removes its temporary int3
    only after every CPU synchronised (text_poke_sync()), and while it is there the int3
    handler recognises it. Hardware therefore never traps on an int3 that the memory no
    longer holds; a TCG vCPU running a stale translation does (thread=multi).
    """
    console = str(getattr(error, "console_tail", ""))
    m = _INT3.search(console)
    if not m:
        return None
    code = m.group("code").split()
    at = next((i for i, b in enumerate(code) if b.startswith("<")), None)
    if at is None or at == 0 or code[at - 1] == "cc":
        return None
    return "Oops: int3 on a byte that holds no int3 (a stale TCG translation of patched code)"
