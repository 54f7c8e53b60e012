"""What the device flows return: the devices as plugged, and the outcome of a removal or
resize. Plain records, so expectations can name an outcome without importing QMP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

Event = dict[str, Any]  # a QMP event, as harness.qemu.qmp keeps it


class Span(Protocol):
    """Anything with a guest-physical range: every memory device, a PhysRange."""

    @property
    def addr(self) -> int: ...

    @property
    def span(self) -> int: ...


@dataclass(frozen=True)
class PhysRange:
    """A guest-physical range that is no device of its own (dax kmem's System RAM)."""

    addr: int
    size: int

    @property
    def span(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"{self.size >> 20} MiB at {self.addr:#x}"


@dataclass
class Dimm:
    """A pc-dimm and its RAM backend, as plugged."""

    id: str
    memdev: str
    size: int
    addr: int = -1  # guest physical address, from query-memory-devices
    slot: int = -1
    hotplugged: bool = True
    node: int = 0  # NUMA node, as QEMU placed it

    @property
    def span(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"{self.id} ({self.size >> 20} MiB at {self.addr:#x})"


class Unplug(Enum):
    DELETED = "deleted"  # DEVICE_DELETED arrived: gone from QEMU
    REFUSED = "refused"  # the guest said no (ACPI _OST failure / guest error event)
    NO_EVENT = "no-event"  # nothing within the bound: the guest never answered
    REJECTED = "rejected"  # QEMU itself refused device_del (its message in .error)


@dataclass(frozen=True)
class UnplugResult:
    outcome: Unplug
    event: Event | None  # the deciding event
    events: list[Event]  # everything QEMU said meanwhile
    error: str = ""  # QEMU's message when it rejected device_del

    def describe(self) -> str:
        if self.outcome is Unplug.REJECTED:
            return f"rejected by QEMU: {self.error}"
        if self.event is None:
            return f"{self.outcome.value}: no answer ({_names(self.events)})"
        return f"{self.outcome.value}: {self.event['event']} {self.event.get('data', {})}"


def _names(events: list[Event]) -> str:
    return ", ".join(e["event"] for e in events) or "no events"


@dataclass
class VirtioMem:
    """A virtio-mem-pci device and its RAM backend."""

    id: str
    memdev: str
    max_size: int
    addr: int = -1  # start of its device memory region ("memaddr")
    block_size: int = 0
    requested: int = 0
    size: int = 0  # plugged now

    @property
    def span(self) -> int:
        return self.max_size

    def __str__(self) -> str:
        return f"{self.id} ({self.size >> 20}/{self.max_size >> 20} MiB plugged at {self.addr:#x})"


@dataclass(frozen=True)
class Resize:
    requested: int
    size: int  # what the guest plugged when the wait ended
    reached: bool

    def describe(self) -> str:
        state = "reached" if self.reached else "NOT reached"
        return f"requested {self.requested >> 20} MiB, size {self.size >> 20} MiB ({state})"


@dataclass
class Nvdimm:
    """An NVDIMM and its file backend (a sparse file in the machine's private dir)."""

    id: str
    memdev: str
    size: int
    label_size: int | None = None
    addr: int = -1

    @property
    def span(self) -> int:
        return self.size

    def __str__(self) -> str:
        return f"{self.id} ({self.size >> 20} MiB at {self.addr:#x})"
