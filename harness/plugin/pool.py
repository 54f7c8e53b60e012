"""The pool of booted guests: one per (target, boot configuration), shared by the scenarios
that cannot disturb each other; a guest left dirty or dead is replaced, a boot that failed is
remembered so that its scenarios report it at once.

Idle guests cost host CPU (a TCG guest's timers keep its thread waking) and memory, and one
would be left per boot shape: after each scenario the pool keeps the guest the next scenario
uses and at most ``MEMHP_IDLE_GUESTS`` (default 1) others, ending the least recently used
first, and ends those of other targets at once (pytest runs a target's scenarios together:
they are parametrized at session scope)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from harness.arch import Arch
from harness.errors import InfrastructureError, KernelFailure, MemhpError
from harness.images import build as build_image
from harness.images.image import Image
from harness.preflight import Plan, Target
from harness.progress import progress
from harness.qemu import snapshots
from harness.qemu.accel import choose_accel, tcg_artifact
from harness.qemu.config import ColdPlug, MachineConfig
from harness.qemu.machine import QemuMachine


@dataclass(frozen=True)
class Boot:
    cmdline: tuple[str, ...]
    memory: int | None
    coldplug: tuple[ColdPlug, ...] = ()
    cold_boot: bool = False  # the test needs the boot itself, not a saved one
    numa: tuple[int, ...] = ()  # boot RAM per NUMA node (MachineConfig.numa)
    reboot: bool = False  # guest reboots restart it (MachineConfig.reboot)
    sleeps: bool = False  # the guest goes to S3 and wakes (MachineConfig.sleeps)

    @classmethod
    def of(cls, item: pytest.Item, arch: Arch) -> tuple[Boot, bool]:
        """The test's boot configuration: its memhp marker, else the arch's scenario one."""
        marker = item.get_closest_marker("memhp")
        kw = marker.kwargs if marker else {}
        cmdline = tuple(kw.get("cmdline", arch.scenario_cmdline) or ()) + tuple(
            kw.get("extra_cmdline", ())
        )
        boot = cls(
            cmdline,
            kw.get("memory"),
            tuple(kw.get("coldplug", ())),
            bool(kw.get("cold_boot", False)),
            tuple(kw.get("numa", ())),
            bool(kw.get("reboot", False)),
            bool(kw.get("sleeps", False)),
        )
        return boot, bool(kw.get("fresh", False))


ImageKey = tuple[str, str]  # arch, kernel spec: one image serves every QEMU
Key = tuple[Target, Boot]


@dataclass
class Pool:
    accel: str | None  # --memhp-accel
    plan: Plan  # the targets, the lock, the QEMU builds
    shared: dict[Key, QemuMachine] = field(default_factory=dict)  # least recently used first
    broken: dict[Key, MemhpError] = field(default_factory=dict)
    images: dict[ImageKey, Image] = field(default_factory=dict)
    image_errors: dict[ImageKey, MemhpError] = field(default_factory=dict)
    unrestorable: set[Key] = field(default_factory=set)  # boot these: restoring failed once

    def image(self, target: Target) -> Image:
        """The target's image, built once per session; a failure is remembered, so every
        scenario of the target reports it at once instead of trying again."""
        key = (target.arch.name, target.kernel)
        if key in self.image_errors:
            raise self.image_errors[key]
        if key not in self.images:
            lock = self.plan.lock
            pinned = lock.pinned(target.arch.name, target.kernel) if lock else None
            try:
                self.images[key] = build_image(target.kernel, target.arch, pinned=pinned)
            except MemhpError as exc:
                self.image_errors[key] = exc
                raise
        return self.images[key]

    def acquire(self, target: Target, boot: Boot, fresh: bool) -> QemuMachine:
        key = (target, boot)
        if key in self.broken:  # one boot failure per configuration, not one per test
            raise self.broken[key]
        if not fresh and key in self.shared and self.shared[key].alive():
            self.shared[key] = self.shared.pop(key)  # now the most recently used
            return self.shared[key]
        try:
            machine = self._boot_retrying_tcg_artifacts(target, boot)
        except MemhpError as exc:
            self.broken[key] = exc
            raise
        if not fresh:
            self.shared[key] = machine
        return machine

    def _boot_retrying_tcg_artifacts(self, target: Target, boot: Boot) -> QemuMachine:
        """Boot; retry once only a failure the harness names as an artifact of QEMU's
        emulation (harness.qemu.accel.tcg_artifact), and say so. Any other boot failure stands:
        a kernel that fails to boot half the time must not pass."""
        try:
            return self._boot(target, boot)
        except (InfrastructureError, KernelFailure) as first:
            artifact = tcg_artifact(first)
            if artifact is None:
                raise
            progress.note(
                f"{target.id}: boot failed with a TCG artifact ({artifact}); booting once more"
            )
            return self._boot(target, boot)

    def _boot(self, target: Target, boot: Boot) -> QemuMachine:
        accel = choose_accel(target.arch, self.accel)
        cfg = MachineConfig(
            arch=target.arch,
            image=self.image(target),
            qemu=self.plan.qemu(target),
            cmdline=boot.cmdline,
            accel=accel,
            coldplug=boot.coldplug,
            numa=boot.numa,
            reboot=boot.reboot,
            sleeps=boot.sleeps,
        )
        if boot.memory:
            cfg = dataclasses.replace(cfg, memory=boot.memory)
        key = (target, boot)
        saved = (
            None
            if boot.cold_boot or key in self.unrestorable or not snapshots.enabled()
            else snapshots.path_for(cfg, accel)
        )
        if saved is not None and saved.is_file():
            machine = QemuMachine(dataclasses.replace(cfg, restore_from=saved))
            try:
                machine.start()
                snapshots.used(saved)
                return machine
            except InfrastructureError as exc:  # e.g. a QEMU update broke the format
                progress.note(f"{target.id}: the saved boot did not restore ({exc}); booting")
                saved.unlink(missing_ok=True)
                self.unrestorable.add(key)  # this session boots this shape from now on
                saved = None
        machine = QemuMachine(cfg)
        machine.start()
        if saved is not None and not saved.exists():
            try:
                machine.save(saved)
                snapshots.prune(keep=saved)
            except InfrastructureError as exc:  # the guest is not handed out half-saved
                progress.note(f"{target.id}: could not save the boot ({exc}); booting again")
                machine.shutdown()
                machine = QemuMachine(cfg)
                machine.start()
        return machine

    def release(self, machine: QemuMachine, reusable: bool) -> None:
        if reusable and machine.alive() and machine in self.shared.values():
            return
        for key, m in list(self.shared.items()):
            if m is machine:
                del self.shared[key]
        machine.shutdown()

    def trim(self, upcoming: Key | None, limit: int) -> None:
        """Between scenarios: end the idle guests of other targets than the ``upcoming``
        scenario's, then the least recently used beyond ``limit`` besides the upcoming one's."""
        idle = [k for k in self.shared if k != upcoming]
        ended = [k for k in idle if upcoming is None or k[0] != upcoming[0]]
        kept = [k for k in idle if k not in ended]
        ended += kept[: max(0, len(kept) - limit)]
        for key in ended:
            self.shared.pop(key).shutdown()

    def close(self) -> None:
        for machine in self.shared.values():
            machine.shutdown()
        self.shared.clear()
