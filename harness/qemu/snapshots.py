"""Saved boots: a guest that booted once is saved (QEMU migration to a file) and every later
fresh guest of the same shape starts from it (``-incoming``), ready for SSH at once.

A saved boot is keyed by everything that shapes the guest's state at the ready marker: the
image, the QEMU (binary, build, firmware), the accelerator, the machine shape (RAM, slots,
vCPUs, devices on the command line) and the kernel command line. A guest with cold-plugged
devices always boots (their backing files live in the machine's own directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness import cache
from harness.arch import SavedBoots
from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.qemu.accel import Accel
    from harness.qemu.config import MachineConfig

ENV = "MEMHP_RESTORE"  # 0: always boot
# Saved boots kept at most (GiB), least recently used first to go: every image, QEMU and
# machine shape gets its own (100-160 MiB each), and a day of builds and bisects made 54 GiB.
BUDGET_ENV = "MEMHP_SAVED_BOOTS_GIB"
DEFAULT_BUDGET_GIB = 8


def enabled() -> bool:
    return os.environ.get(ENV, "1") not in ("0", "no", "off")


def path_for(config: MachineConfig, accel: Accel) -> Path | None:
    """Where the saved boot of ``config`` lives; None where restoring cannot serve."""
    saved_boots = config.arch.saved_boots
    if config.coldplug or config.restore_from is not None or not saved_boots:
        return None
    qemu = config.qemu_build()
    if isinstance(saved_boots, SavedBoots) and not saved_boots.allows(qemu.version):
        return None
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


def used(saved: Path) -> None:
    """``saved`` served a guest: it is the most recently used (prune keeps it longest)."""
    with contextlib.suppress(FileNotFoundError):  # pruned by another worker since
        os.utime(saved)


def budget_bytes() -> int:
    """$MEMHP_SAVED_BOOTS_GIB in bytes; UsageError for what is not a size."""
    text = os.environ.get(BUDGET_ENV, str(DEFAULT_BUDGET_GIB))
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if gib < 0:
        raise UsageError(f"{BUDGET_ENV}={text!r}: give the saved boots' space in GiB, e.g. 8")
    return int(gib * 2**30)


def prune(keep: Path, budget: int | None = None) -> list[Path]:
    """Remove the least recently used saved boots (and their console logs) until the rest fit
    in ``budget`` bytes (default: $MEMHP_SAVED_BOOTS_GIB GiB); ``keep`` always stays. A
    guest restoring one that goes meanwhile still reads it (the open file outlives the
    unlink), and a later guest of that shape boots and saves again. Returns what went."""
    if budget is None:
        budget = budget_bytes()
    sizes: dict[Path, tuple[float, int]] = {}
    for mig in keep.parent.glob("*.mig"):
        try:
            st = mig.stat()
        except FileNotFoundError:  # another worker pruned it
            continue
        sizes[mig] = (st.st_mtime, st.st_size)
    total = sum(size for _, size in sizes.values())
    gone = []
    for mig, (_, size) in sorted(sizes.items(), key=lambda item: item[1][0]):
        if total <= budget:
            break
        if mig == keep:
            continue
        mig.unlink(missing_ok=True)
        mig.with_suffix(".console").unlink(missing_ok=True)
        total -= size
        gone.append(mig)
    return gone
