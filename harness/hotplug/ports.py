"""The PCIe root ports a hot-plugged PCI device (virtio-mem-pci) goes into: q35 hot-plugs
PCIe devices only into a free root port that existed at boot, so the arch profile puts some
on QEMU's command line (Arch.hotplug_ports) and this keeps which device took which."""

from __future__ import annotations

from harness.arch import Arch
from harness.errors import UsageError


class PciePorts:
    def __init__(self, arch: Arch) -> None:
        self.arch = arch
        self._taken: dict[str, str] = {}  # port id -> device id

    def take(self, device: str) -> str:
        """A free port's id for ``device``.

        :raises UsageError: every port is taken (a scenario plugs more than the arch has).
        """
        for spec in self.arch.hotplug_ports:
            port = spec.split("id=", 1)[1].split(",", 1)[0]
            if port not in self._taken:
                self._taken[port] = device
                return port
        raise UsageError(
            f"no free PCIe root port for {device} on {self.arch.name} "
            f"({len(self._taken)} in use): unplug a device first"
        )

    def release(self, device: str) -> None:
        """``device`` left QEMU (or never arrived): its port is free again."""
        self._taken = {p: d for p, d in self._taken.items() if d != device}
