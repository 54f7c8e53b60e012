"""NVDIMM (libnvdimm) and device-dax inside the guest, through Debian's ndctl/daxctl."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from harness.guest.memory import write_errno
from harness.guest.shell import CommandResult, GuestShell
from harness.hotplug.records import PhysRange

ND = "/sys/bus/nd/devices"


@dataclass(frozen=True)
class Namespace:
    dev: str  # namespace0.0
    mode: str  # raw, fsdax, devdax, sector
    start: int  # physical start of the namespace
    size: int  # usable size, as ndctl reports it
    blockdev: str | None  # pmem0
    chardev: str | None  # dax0.0

    @classmethod
    def of(cls, info: dict[str, Any], start: int) -> Namespace:
        dax = info.get("daxregion", {}).get("devices", [{}])[0]
        return cls(
            dev=info["dev"],
            mode=info.get("mode", "raw"),
            start=start,
            size=int(info.get("size", 0)),
            blockdev=info.get("blockdev"),
            chardev=dax.get("chardev") or info.get("chardev"),
        )


def region_at(guest: GuestShell, addr: int) -> str:
    """The nd region whose resource starts at ``addr`` (an NVDIMM's guest address)."""
    out = guest.run(f"grep -lx {addr:#x} {ND}/region*/resource", check=False).stdout.split()
    if not out:
        raise AssertionError(
            f"no nd region at {addr:#x}: "
            + guest.run(f"ls {ND}", check=False).stdout.replace("\n", " ")
        )
    return out[0].split("/")[-2]


def namespaces(guest: GuestShell, region: str) -> list[Namespace]:
    """Active namespaces of a region, with the physical range of each."""
    out = guest.run(f"ndctl list -N -r {shlex.quote(region)}").stdout.strip()
    infos = json.loads(out) if out else []
    if isinstance(infos, dict):
        infos = [infos]
    return [Namespace.of(i, _resource(guest, i["dev"])) for i in infos]


def namespace(guest: GuestShell, region: str, mode: str = "fsdax") -> Namespace:
    """The region's namespace; labelled regions (spapr) start empty, so create one."""
    found = namespaces(guest, region)
    if found:
        return found[0]
    out = guest.exercise(f"ndctl create-namespace -r {shlex.quote(region)} -m {mode}").stdout
    info = json.loads(out)
    return Namespace.of(info, _resource(guest, info["dev"]))


def reconfigure(guest: GuestShell, namespace: str, mode: str) -> Namespace:
    """ndctl create-namespace -f -e NS -m MODE (fsdax, devdax, raw)."""
    out = guest.exercise(f"ndctl create-namespace -f -e {shlex.quote(namespace)} -m {mode}").stdout
    info = json.loads(out)
    return Namespace.of(info, _resource(guest, info["dev"]))


def to_system_ram(guest: GuestShell, chardev: str) -> PhysRange:
    """Hand a devdax device to the kmem driver as System RAM, through sysfs (unbind from
    device_dax, new_id on kmem: what daxctl reconfigure-device does, minus libkmod, which
    cannot see a built-in kmem without depmod's indexes). Blocks come up as
    auto_online_blocks says.

    Returns the "System RAM (kmem)" range. kmem aligns the dax range to memory blocks, so it
    can be smaller than the device.
    """
    dev = shlex.quote(chardev)
    guest.exercise(
        f"echo {dev} > /sys/bus/dax/drivers/device_dax/unbind && "
        f"echo {dev} > /sys/bus/dax/drivers/kmem/new_id"
    )
    iomem = guest.run("cat /proc/iomem").stdout
    m = re.search(r"^\s*([0-9a-f]+)-([0-9a-f]+) : System RAM \(kmem\)", iomem, re.M)
    if not m:
        raise AssertionError("kmem took the device but /proc/iomem has no System RAM (kmem)")
    start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
    return PhysRange(start, end - start)


def release_from_kmem(guest: GuestShell, chardev: str) -> int:
    """Unbind the device from kmem, which removes its memory first (every block must be
    offline). 0 on success, else the errno the unbind returned (EBUSY: memory still online,
    drivers/dax/kmem.c: "cannot be hotremoved until the next reboot")."""
    res = guest.run(f"echo {shlex.quote(chardev)} > /sys/bus/dax/drivers/kmem/unbind", check=False)
    return 0 if res.status == 0 else write_errno(res.stderr)


def to_devdax(guest: GuestShell, chardev: str) -> int:
    """Give the device back to device_dax (release_from_kmem, then the bind): 0, or the
    errno of kmem's refusal."""
    dev = shlex.quote(chardev)
    refused = release_from_kmem(guest, chardev)
    if refused:
        return refused
    guest.exercise(
        f"echo {dev} > /sys/bus/dax/drivers/kmem/remove_id 2>/dev/null; "
        f"echo {dev} > /sys/bus/dax/drivers/device_dax/bind"
    )
    return 0


def has_chardev(guest: GuestShell, name: str) -> bool:
    """Whether /dev/NAME is a character device (a dax device the kernel created)."""
    return guest.run(f"test -c /dev/{shlex.quote(name)}", check=False).status == 0


def disable_namespace(guest: GuestShell, namespace: str) -> CommandResult:
    """ndctl disable-namespace; the result, whatever it is (scenarios expect refusals)."""
    return guest.run(f"ndctl disable-namespace {shlex.quote(namespace)}", check=False)


def _resource(guest: GuestShell, namespace: str) -> int:
    """Physical start of the namespace (its info block, if any, included)."""
    return int(guest.run(f"cat {ND}/{shlex.quote(namespace)}/resource").stdout.strip(), 16)
