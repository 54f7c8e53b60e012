"""Memory devices over QMP: plug, acknowledge, unplug, each step waited on by its event.

QMP flows (QEMU 7.2, checked by hand; see shared/reference/qmp-and-qemu.md):
* pc-dimm plug: object-add memory-backend-ram, device_add pc-dimm. On x86 the guest's ACPI
  code acknowledges with ACPI_DEVICE_OST (source 1 = insert).
* pc-dimm unplug: device_del only *requests* removal. Success: ACPI_DEVICE_OST source 3
  status 0x84, then DEVICE_DELETED. Refusal: ACPI_DEVICE_OST source 3 status 0x80-0x83 and
  no DEVICE_DELETED (QEMU 7.2 sends no DEVICE_UNPLUG_GUEST_ERROR on x86); on pseries,
  DEVICE_UNPLUG_GUEST_ERROR / MEM_UNPLUG_ERROR, or no event at all.
* virtio-mem: resize with qom-set requested-size; MEMORY_DEVICE_SIZE_CHANGE is rate-limited
  (one a second per device) and reports intermediate sizes, so wait for the one whose size
  equals the request, or for qom-get size to say so first.
  device_del: refused by QEMU 7.2, allowed from 8.1 once size is 0.
* NVDIMM: memory-backend-file (share=on) + nvdimm; needs -machine nvdimm=on. QEMU refuses
  its unplug on every arch ("nvdimm device hot unplug is not supported yet").
"""

from __future__ import annotations

import contextlib
import itertools
import re
import uuid
from typing import TYPE_CHECKING, Any

from harness.errors import KernelFailure, QMPCommandError, UsageError
from harness.hotplug.ports import PciePorts
from harness.hotplug.records import Dimm, Nvdimm, Resize, Unplug, UnplugResult, VirtioMem
from harness.qemu.qmp import Event, EventTimeout, Match, described, event_is

if TYPE_CHECKING:
    from harness.qemu.machine import QemuMachine

# ACPI 6.x _OST status codes for an eject request (source 3): 0x80-0x83 are failures
# (0x84, "in progress", precedes DEVICE_DELETED on success).
OST_EJECT_REFUSED = range(0x80, 0x84)
ACPI_SOURCE_INSERT = 1
ACPI_SOURCE_EJECT = 3

_ids = itertools.count(1)


class NoAcknowledgement(KernelFailure):
    """A live guest (QEMU answers QMP, the guest answers SSH) never acknowledged a device
    it had to: the kernel's ACPI or virtio side did not do its part."""


def _add(
    machine: QemuMachine,
    backend: dict[str, object],
    device: dict[str, object],
    ports: PciePorts | None = None,
) -> None:
    """object-add the backend, then device_add the device; the backend (and the device's
    PCIe port) are given back if QEMU refuses the device.

    :raises QMPCommandError: QEMU refused one of them (its message).
    """
    machine.qmp("object-add", backend)
    try:
        machine.qmp("device_add", device)
    except BaseException:
        if ports is not None:
            ports.release(str(device["id"]))
        machine.qmp("object-del", {"id": backend["id"]})
        raise


def _acknowledged(
    machine: QemuMachine, match: Match, *, after: int, timeout: float, what: str
) -> Event:
    """The guest's acknowledgement of a device (an event it must cause).

    :raises NoAcknowledgement: none came while the guest was alive.
    :raises VMLost: the VM went away meanwhile.
    """
    try:
        return machine.events.wait(match, after=after, timeout=timeout, what=what)
    except EventTimeout as exc:
        raise NoAcknowledgement(f"the guest kernel never acknowledged it: {exc}") from exc


def plug_dimm(
    machine: QemuMachine,
    size: int,
    *,
    node: int | None = None,
    addr: int | None = None,
    ack_timeout: float = 30.0,
    validate: bool = True,
) -> Dimm:
    """Hot-add a pc-dimm of ``size`` bytes (into NUMA ``node``, at ``addr``) and wait for
    the guest to acknowledge it. ``validate=False`` leaves the arguments to QEMU's judgement
    (scenarios about QEMU's refusals); a refusal is QMPCommandError with QEMU's message."""
    arch = machine.arch
    if validate and (size <= 0 or size % arch.dimm_align):
        raise UsageError(
            f"DIMM size {size >> 20} MiB is not a multiple of "
            f"{arch.dimm_align >> 20} MiB ({arch.name})"
        )
    n = next(_ids)
    dimm = Dimm(id=f"dimm{n}", memdev=f"dimm{n}-mem", size=size)
    mark = machine.events.mark()
    args: dict[str, object] = {"driver": "pc-dimm", "id": dimm.id, "memdev": dimm.memdev}
    if node is not None:
        args["node"] = node
    if addr is not None:
        args["addr"] = addr
    _add(machine, {"qom-type": "memory-backend-ram", "id": dimm.memdev, "size": size}, args)
    if arch.acpi_memory_hotplug:
        ost = _acknowledged(
            machine,
            _ost(dimm.id, ACPI_SOURCE_INSERT),
            after=mark,
            timeout=ack_timeout,
            what=f"ACPI_DEVICE_OST for {dimm.id}",
        )
        status = ost["data"]["info"]["status"]
        if status != 0:
            raise AssertionError(f"guest refused {dimm.id}: _OST status {status:#x}")
        _fill_from_qemu(machine, dimm)
    else:
        # pseries reports no completion to QEMU: the guest's DLPAR handler adds and onlines
        # the LMBs. Wait, bounded, in the guest for all of them to be online.
        _fill_from_qemu(machine, dimm)
        machine.ready_guest().wait_blocks_online(dimm.addr, dimm.size, timeout=ack_timeout)
    return dimm


def unplug(
    machine: QemuMachine,
    device: str,
    memdev: str,
    *,
    timeout: float = 30.0,
    ports: PciePorts | None = None,
) -> UnplugResult:
    """Ask for removal; wait for QEMU's verdict. The backend is deleted only on success."""
    mark = machine.events.mark()
    try:
        machine.qmp("device_del", {"id": device})
    except QMPCommandError as exc:
        return UnplugResult(Unplug.REJECTED, None, [], exc.desc)
    try:
        event = machine.events.wait(
            _unplug_verdict(device),
            after=mark,
            timeout=timeout,
            what=f"unplug verdict for {device}",
        )
    except EventTimeout as exc:
        return UnplugResult(Unplug.NO_EVENT, None, exc.seen)
    seen = machine.events.since(mark)
    if event["event"] == "DEVICE_DELETED":
        machine.qmp("object-del", {"id": memdev})
        if ports is not None:
            ports.release(device)
        return UnplugResult(Unplug.DELETED, event, seen)
    return UnplugResult(Unplug.REFUSED, event, seen)


def unplug_dimm(machine: QemuMachine, dimm: Dimm, *, timeout: float = 30.0) -> UnplugResult:
    return unplug(machine, dimm.id, dimm.memdev, timeout=timeout)


def memory_devices(machine: QemuMachine) -> dict[str, dict[str, Any]]:
    """query-memory-devices, keyed by device id."""
    out = {}
    for dev in machine.qmp("query-memory-devices"):
        data = dev["data"]
        out[data.get("id") or f"{dev['type']}@{data.get('addr', 0):#x}"] = data
    return out


def _fill_from_qemu(machine: QemuMachine, dimm: Dimm) -> None:
    info = memory_devices(machine)[dimm.id]
    dimm.addr, dimm.size, dimm.slot = info["addr"], info["size"], info["slot"]
    dimm.hotplugged, dimm.node = info["hotplugged"], info.get("node", 0)


def _ost(device: str, source: int) -> Match:
    def match(event: Event) -> bool:
        info = event.get("data", {}).get("info", {})
        return bool(
            event["event"] == "ACPI_DEVICE_OST"
            and info.get("device") == device
            and info.get("source") == source
        )

    return described(match, ("ACPI_DEVICE_OST",), {"info__device": device, "info__source": source})


def _unplug_verdict(device: str) -> Match:
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

    names = ("DEVICE_DELETED", "DEVICE_UNPLUG_GUEST_ERROR", "MEM_UNPLUG_ERROR", "ACPI_DEVICE_OST")
    return described(match, names, {"device": device})


# -- virtio-mem ------------------------------------------------------------------------------


def plug_virtio_mem(
    machine: QemuMachine,
    ports: PciePorts,
    max_size: int,
    *,
    requested: int = 0,
    block_size: int | None = None,
    dynamic_memslots: bool = False,
) -> VirtioMem:
    """Hot-plug the machine's virtio-mem (virtio-mem-pci on a free PCIe root port, or
    virtio-mem-ccw, which needs none); ``dynamic_memslots``: QEMU maps the device memory in
    memslots as the guest plugs it (QEMU 8.2+)."""
    n = next(_ids)
    dev = VirtioMem(id=f"vmem{n}", memdev=f"vmem{n}-mem", max_size=max_size)
    args: dict[str, object] = {
        "driver": machine.arch.virtio_mem_driver,
        "id": dev.id,
        "memdev": dev.memdev,
        "requested-size": 0,
    }
    if machine.arch.hotplug_ports:
        args["bus"] = ports.take(dev.id)
    if block_size:
        args["block-size"] = block_size
    if dynamic_memslots:
        args["dynamic-memslots"] = True
    backend: dict[str, object] = {
        "qom-type": "memory-backend-ram",
        "id": dev.memdev,
        "size": max_size,
    }
    _add(machine, backend, args, ports)
    refresh_virtio_mem(machine, dev)
    if requested:
        resize_virtio_mem(machine, dev, requested)
    return dev


def refresh_virtio_mem(machine: QemuMachine, dev: VirtioMem) -> VirtioMem:
    info = memory_devices(machine)[dev.id]
    dev.addr, dev.max_size = info["memaddr"], info["max-size"]
    dev.block_size, dev.requested, dev.size = (
        info["block-size"],
        info["requested-size"],
        info["size"],
    )
    return dev


def resize_virtio_mem(
    machine: QemuMachine, dev: VirtioMem, requested: int, *, timeout: float = 60.0
) -> Resize:
    """Set requested-size; wait until the device's size is exactly it.

    QEMU reports the size through MEMORY_DEVICE_SIZE_CHANGE, but throttled to one event a
    second per device (the last one held back until the second is over), so a resize the
    guest finishes in 100 ms would wait up to a second for its event: the wait also asks
    QEMU's ``size`` property, which is current at once. A guest that cannot satisfy the
    request (unmovable pages in the way) keeps retrying quietly: then the wait ends at
    ``timeout`` and the result says so (``reached``), for the scenario to judge.
    """
    mark = machine.events.mark()
    machine.qmp("qom-set", {"path": dev.id, "property": "requested-size", "value": requested})

    def reached() -> bool:
        return int(machine.qmp("qom-get", {"path": dev.id, "property": "size"})) == requested

    if not reached():
        with contextlib.suppress(EventTimeout):  # the result below says it was not reached
            machine.events.wait_or_poll(
                event_is("MEMORY_DEVICE_SIZE_CHANGE", id=dev.id, size=requested),
                reached,
                after=mark,
                timeout=timeout,
                what=f"{dev.id} size {requested >> 20} MiB",
            )
    refresh_virtio_mem(machine, dev)
    return Resize(requested, dev.size, dev.size == requested)


def reported_sizes(
    machine: QemuMachine, dev: VirtioMem, mark: int, final: int, timeout: float = 5.0
) -> list[int]:
    """The sizes QEMU's MEMORY_DEVICE_SIZE_CHANGE events reported for ``dev`` since ``mark``,
    once one reported ``final`` or ``timeout`` passed: the event comes up to a second after
    the size (QEMU throttles it per device), and resize_virtio_mem does not wait for it."""
    with contextlib.suppress(EventTimeout):  # the list says what came
        machine.events.wait(
            event_is("MEMORY_DEVICE_SIZE_CHANGE", id=dev.id, size=final),
            after=mark,
            timeout=timeout,
            what=f"{dev.id} reported at {final >> 20} MiB",
        )
    return [
        int(e["data"]["size"])
        for e in machine.events.since(mark)
        if e["event"] == "MEMORY_DEVICE_SIZE_CHANGE" and e["data"].get("id") == dev.id
    ]


def wait_suspend(machine: QemuMachine, mark: int, timeout: float) -> bool:
    """Whether the guest entered S3 (QEMU's SUSPEND) within ``timeout``; a guest that
    refused says so itself (the write to /sys/power/state fails)."""
    try:
        machine.events.wait(event_is("SUSPEND"), after=mark, timeout=timeout, what="SUSPEND")
    except EventTimeout:
        return False
    return True


def wait_wakeup(machine: QemuMachine, mark: int, timeout: float) -> None:
    """QEMU's WAKEUP after system_wakeup.

    :raises NoAcknowledgement: none came (QEMU's own; a VM that answers otherwise).
    """
    _acknowledged(machine, event_is("WAKEUP"), after=mark, timeout=timeout, what="WAKEUP")


def memslots(machine: QemuMachine, dev: VirtioMem) -> list[range]:
    """The guest-physical ranges of the device's memslots QEMU has mapped now (its memory
    tree: the aliases "memslot-N" of the device's backend), in address order."""
    tree = machine.qmp("human-monitor-command", {"command-line": "info mtree"})
    found = set()  # the same alias shows in each address space that maps system memory
    for m in re.finditer(
        rf"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio [^)]*\): alias memslot-\d+ "
        rf"@{re.escape(dev.memdev)} ",
        tree,
        re.M,
    ):
        found.add(range(int(m[1], 16), int(m[2], 16) + 1))
    return sorted(found, key=lambda r: r.start)


def unplug_virtio_mem(
    machine: QemuMachine, ports: PciePorts, dev: VirtioMem, *, timeout: float = 30.0
) -> UnplugResult:
    return unplug(machine, dev.id, dev.memdev, timeout=timeout, ports=ports)


# -- NVDIMM ----------------------------------------------------------------------------------


def plug_nvdimm(
    machine: QemuMachine,
    size: int,
    *,
    label_size: int | None = None,
    addr: int | None = None,
    timeout: float = 30.0,
) -> Nvdimm:
    """Hot-plug an NVDIMM; wait until the guest shows its region."""
    if not machine.arch.supports("nvdimm"):
        raise UsageError(f"NVDIMM is not available on {machine.arch.name}")
    arch = machine.arch
    if size % arch.nvdimm_align:
        raise UsageError(
            f"NVDIMM size {size >> 20} MiB is not a multiple of "
            f"{arch.nvdimm_align >> 20} MiB ({arch.name})"
        )
    n = next(_ids)
    label_size = label_size if label_size is not None else arch.nvdimm_label_size
    dev = Nvdimm(id=f"nvdimm{n}", memdev=f"nvdimm{n}-mem", size=size, label_size=label_size)
    total = size + (label_size or 0)  # QEMU carves the label area off the backend's end
    path = machine.workdir / f"{dev.id}.img"
    with path.open("wb") as f:
        f.truncate(total)  # sparse: costs no disk until written
    backend: dict[str, object] = {
        "qom-type": "memory-backend-file",
        "id": dev.memdev,
        "mem-path": str(path),
        "size": total,
        "share": True,
    }
    args: dict[str, object] = {"driver": arch.nvdimm_driver, "id": dev.id, "memdev": dev.memdev}
    if label_size is not None:
        args["label-size"] = label_size
        args["uuid"] = str(uuid.uuid4())  # spapr wants one; x86 accepts it
    if addr is not None:
        args["addr"] = addr
    _add(machine, backend, args)
    dev.addr = memory_devices(machine)[dev.id]["addr"]
    # NFIT hotplug: QEMU notifies the guest, which re-reads _FIT; there is no QMP event for
    # its completion, so wait (bounded) in the guest for the new region.
    machine.ready_guest().wait_until(
        f"grep -qx {dev.addr:#x} /sys/bus/nd/devices/region*/resource",
        timeout=timeout,
        what=f"an nd region at {dev.addr:#x}",
    )
    return dev
