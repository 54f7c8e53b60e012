"""CXL volatile memory inside the guest, through the kernel's own sysfs interface (what the
``cxl`` tool's create-region does, Documentation/ABI/testing/sysfs-bus-cxl; bookworm's
cxl 76.1 cannot create RAM regions yet): a RAM region on a root decoder, one endpoint decoder
of a memdev as its target, committed and bound; dax_cxl makes it a dax device that kmem takes
as System RAM. Every write exercises the kernel: its refusal is the kernel's answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import ConditionNotMet
from harness.guest.shell import GuestShell
from harness.hotplug.records import PhysRange

CXL = "/sys/bus/cxl/devices"
DAX = "/sys/bus/dax/devices"


@dataclass(frozen=True)
class Region:
    name: str  # region0
    root: str  # the root decoder it was made on (decoder0.0)
    target: str  # the endpoint decoder of the memdev (decoder2.0)
    size: int


def create_ram_region(
    guest: GuestShell, memdev: str, size: int, root: str = "decoder0.0"
) -> Region:
    """A committed, bound RAM region of ``size`` bytes on ``memdev``'s first endpoint
    decoder, interleaved one way.

    :raises GuestCommandError: the kernel refused a step (the command names which).
    """
    target = guest.run(  # the endpoint port whose upstream port is the memdev: its decoder
        f'for e in {CXL}/endpoint*; do [ "$(basename $(readlink $e/uport))" = {memdev} ] && '
        "basename $(ls -d $e/decoder*.0); done; true"
    ).stdout.strip()
    if not target:
        raise ConditionNotMet(f"set-up: no endpoint decoder of {memdev} (is cxl_mem loaded?)")
    name = guest.run(f"cat {CXL}/{root}/create_ram_region").stdout.strip()
    r = f"{CXL}/{name}"
    guest.exercise(
        f"echo {name} > {CXL}/{root}/create_ram_region && "
        f"echo 4096 > {r}/interleave_granularity && echo 1 > {r}/interleave_ways && "
        f"echo ram > {CXL}/{target}/mode && echo {size} > {CXL}/{target}/dpa_size && "
        f"echo {size} > {r}/size && echo {target} > {r}/target0 && echo 1 > {r}/commit && "
        f"echo {name} > /sys/bus/cxl/drivers/cxl_region/bind"
    )
    return Region(name, root, target, size)


def destroy_region(guest: GuestShell, region: Region) -> None:
    """Unbind, decommit and delete the region, and give the endpoint decoder its DPA back.

    :raises GuestCommandError: the kernel refused (memory of it still online, say).
    """
    r = f"{CXL}/{region.name}"
    guest.exercise(
        f"echo {region.name} > /sys/bus/cxl/drivers/cxl_region/unbind && "
        f"echo 0 > {r}/commit && "
        f"echo {region.name} > {CXL}/{region.root}/delete_region && "
        f"echo 0 > {CXL}/{region.target}/dpa_size"
    )


def kmem_range(guest: GuestShell) -> PhysRange | None:
    """The "System RAM (kmem)" resource kmem made of a dax device, if any."""
    iomem = guest.run("cat /proc/iomem").stdout
    m = re.search(r"^\s*([0-9a-f]+)-([0-9a-f]+) : System RAM \(kmem\)", iomem, re.M)
    if m is None:
        return None
    start, end = int(m[1], 16), int(m[2], 16) + 1
    return PhysRange(start, end - start)


def window_of(guest: GuestShell, ram: PhysRange) -> str | None:
    """The /proc/iomem resource ``ram`` sits in ("CXL Window 0"), if any."""
    iomem = guest.run("cat /proc/iomem").stdout
    for m in re.finditer(r"^([0-9a-f]+)-([0-9a-f]+) : (.+)$", iomem, re.M):
        if int(m[1], 16) <= ram.addr and ram.addr + ram.size - 1 <= int(m[2], 16):
            return m[3].strip()
    return None


def dax_devices(guest: GuestShell) -> dict[str, str]:
    """Each dax device and the driver it is bound to ("" when none)."""
    out = guest.run(
        f'for d in {DAX}/dax*; do [ -e "$d" ] && echo "$(basename $d) $(basename '
        '$(readlink $d/driver) 2>/dev/null)"; done; true'
    ).stdout
    return {
        parts[0]: (parts[1] if len(parts) > 1 else "") for parts in map(str.split, out.splitlines())
    }
