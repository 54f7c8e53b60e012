"""Memory devices over QMP: plug, acknowledge, unplug, each step waited on by its event.

QMP flows (QEMU 7.2, checked by hand; see shared/reference/qmp-and-qemu.md):
* pc-dimm plug: object-add memory-backend-ram, device_add pc-dimm. On x86 the guest's ACPI
  code acknowledges with ACPI_DEVICE_OST (source 1 = insert).
* pc-dimm unplug: device_del only *requests* removal. Success: ACPI_DEVICE_OST source 3
  status 0x84, then DEVICE_DELETED. Refusal: ACPI_DEVICE_OST source 3 status 0x80-0x83 and
  no DEVICE_DELETED (QEMU 7.2 sends no DEVICE_UNPLUG_GUEST_ERROR on x86); on pseries,
  DEVICE_UNPLUG_GUEST_ERROR / MEM_UNPLUG_ERROR, or no event at all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.qmp import Event, EventTimeout

if TYPE_CHECKING:
    from harness.machine import Machine

# ACPI 6.x _OST status codes for an eject request (source 3).
OST_EJECT_IN_PROGRESS = 0x84
OST_EJECT_REFUSED = range(0x80, 0x84)
ACPI_SOURCE_INSERT = 1
ACPI_SOURCE_EJECT = 3

_ids = itertools.count(1)


@dataclass
class Dimm:
    """A pc-dimm and its RAM backend, as plugged."""

    id: str
    memdev: str
    size: int
    addr: int = -1  # guest physical address, from query-memory-devices
    slot: int = -1
    hotplugged: bool = True

    def __str__(self) -> str:
        return f"{self.id} ({self.size >> 20} MiB at {self.addr:#x})"


class Unplug(Enum):
    DELETED = "deleted"  # DEVICE_DELETED arrived: gone from QEMU
    REFUSED = "refused"  # the guest said no (ACPI _OST failure / guest error event)
    NO_EVENT = "no-event"  # nothing within the bound: the guest never answered


@dataclass(frozen=True)
class UnplugResult:
    outcome: Unplug
    event: Event | None  # the deciding event
    events: list[Event]  # everything QEMU said meanwhile

    def describe(self) -> str:
        if self.event is None:
            return f"{self.outcome.value}: no answer ({_names(self.events)})"
        return f"{self.outcome.value}: {self.event['event']} {self.event.get('data', {})}"


def _names(events: list[Event]) -> str:
    return ", ".join(e["event"] for e in events) or "no events"


def plug_dimm(machine: Machine, size: int, *, ack_timeout: float = 30.0) -> Dimm:
    """Hot-add a pc-dimm of ``size`` bytes and wait for the guest to acknowledge it."""
    arch = machine.arch
    if size <= 0 or size % arch.dimm_align:
        raise UsageError(f"DIMM size {size >> 20} MiB is not a multiple of "
                         f"{arch.dimm_align >> 20} MiB ({arch.name})")
    n = next(_ids)
    dimm = Dimm(id=f"dimm{n}", memdev=f"dimm{n}-mem", size=size)
    mark = machine.events.mark()
    machine.qmp("object-add", {"qom-type": "memory-backend-ram", "id": dimm.memdev,
                               "size": size})
    try:
        machine.qmp("device_add", {"driver": "pc-dimm", "id": dimm.id, "memdev": dimm.memdev})
    except BaseException:
        machine.qmp("object-del", {"id": dimm.memdev})
        raise
    if arch.acpi_memory_hotplug:
        ost = machine.events.wait(_ost(dimm.id, ACPI_SOURCE_INSERT), after=mark,
                                  timeout=ack_timeout, what=f"ACPI_DEVICE_OST for {dimm.id}")
        status = ost["data"]["info"]["status"]
        if status != 0:
            raise AssertionError(f"guest refused {dimm.id}: _OST status {status:#x}")
        _fill_from_qemu(machine, dimm)
    else:
        # pseries reports no completion to QEMU: the guest's DLPAR handler adds and onlines
        # the LMBs. Wait, bounded, in the guest for all of them to be online.
        _fill_from_qemu(machine, dimm)
        assert machine.guest is not None
        machine.guest.wait_blocks_online(dimm.addr, dimm.size, timeout=ack_timeout)
    return dimm


def unplug_dimm(machine: Machine, dimm: Dimm, *, timeout: float = 30.0) -> UnplugResult:
    """Ask for removal; wait for QEMU's verdict. The backend is deleted only on success."""
    mark = machine.events.mark()
    machine.qmp("device_del", {"id": dimm.id})
    try:
        event = machine.events.wait(_unplug_verdict(dimm.id), after=mark, timeout=timeout,
                                    what=f"unplug verdict for {dimm.id}")
    except EventTimeout as exc:
        return UnplugResult(Unplug.NO_EVENT, None, exc.seen)
    seen = machine.events.since(mark)
    if event["event"] == "DEVICE_DELETED":
        machine.qmp("object-del", {"id": dimm.memdev})
        return UnplugResult(Unplug.DELETED, event, seen)
    return UnplugResult(Unplug.REFUSED, event, seen)


def memory_devices(machine: Machine) -> dict[str, dict[str, Any]]:
    """query-memory-devices, keyed by device id."""
    out = {}
    for dev in machine.qmp("query-memory-devices"):
        data = dev["data"]
        out[data.get("id") or f"{dev['type']}@{data.get('addr', 0):#x}"] = data
    return out


def _fill_from_qemu(machine: Machine, dimm: Dimm) -> None:
    info = memory_devices(machine)[dimm.id]
    dimm.addr, dimm.size, dimm.slot = info["addr"], info["size"], info["slot"]
    dimm.hotplugged = info["hotplugged"]


def _ost(device: str, source: int) -> Any:
    def match(event: Event) -> bool:
        info = event.get("data", {}).get("info", {})
        return bool(event["event"] == "ACPI_DEVICE_OST" and info.get("device") == device
                    and info.get("source") == source)

    return match


def _unplug_verdict(device: str) -> Any:
    """DEVICE_DELETED, or any event by which the guest refuses the eject."""
    refused_ost = _ost(device, ACPI_SOURCE_EJECT)

    def match(event: Event) -> bool:
        data = event.get("data", {})
        name = event["event"]
        if name == "DEVICE_DELETED":
            return bool(data.get("device") == device)
        if name == "DEVICE_UNPLUG_GUEST_ERROR":
            return bool(data.get("device") == device)
        if name == "MEM_UNPLUG_ERROR":
            return bool(data.get("device") == device)
        return refused_ost(event) and data["info"]["status"] in OST_EJECT_REFUSED

    return match
