"""Saved boots: a guest that booted once is saved (QEMU migration to a file) and every later
fresh guest of the same shape starts from it (``-incoming``), ready for SSH at once.

A saved boot is keyed by everything that shapes the guest's state at the ready marker: the
image, the QEMU (binary, build, firmware), the accelerator, the machine shape (RAM, slots,
vCPUs, devices on the command line) and the kernel command line. A guest with cold-plugged
devices always boots (their backing files live in the machine's own directory).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness import cache

if TYPE_CHECKING:
    from harness.qemu.accel import Accel
    from harness.qemu.config import MachineConfig

ENV = "MEMHP_RESTORE"  # 0: always boot


def enabled() -> bool:
    return os.environ.get(ENV, "1") not in ("0", "no", "off")


def path_for(config: MachineConfig, accel: Accel) -> Path | None:
    """Where the saved boot of ``config`` lives; None where restoring cannot serve."""
    if config.coldplug or config.restore_from is not None or not config.arch.saved_boots:
        return None
    qemu = config.qemu_build()
    st = os.stat(qemu.binary)
    parts = [
        str(config.image.path),
        *sorted(config.image.files.values()),
        # never restored on another QEMU: the binary itself, its build and its firmware
        f"{qemu.binary}:{st.st_size}:{st.st_mtime_ns}:{qemu.identity}:{qemu.datadir}",
        " ".join(accel.qemu_args(config.arch)),
        config.arch.machine,
        f"{config.memory}:{config.maxmem}:{config.slots}:{config.smp}:{config.numa}",
        f"reboot={config.reboot} sleeps={config.sleeps} qboot={config.uses_fast_firmware()}",
        config.kernel_cmdline(),
        *config.qemu_args_extra,
        *config.arch.hotplug_ports,
    ]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
    return cache.path("snapshots", f"{config.arch.name}-{config.image.path.name}-{key}.mig")
