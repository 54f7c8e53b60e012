"""The test-facing handle on one booted guest: what a scenario calls.

It wraps a ``QemuMachine`` (QEMU) and its ``GuestShell`` (SSH) in the vocabulary of memory hotplug:
plug a DIMM, find its memory blocks, online them, read their page flags, unplug it. It keeps
track of what the test plugged so the pool can put the guest back as it found it.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from harness.errors import ConditionNotMet, InfrastructureError
from harness.guest import kpageflags
from harness.guest.kpageflags import KPF, Histogram
from harness.guest.memory import LAYOUT_LINKS, MemoryBlock, MemoryLayout, write_errno
from harness.guest.shell import GuestShell
from harness.hotplug import checks, cxl, devices, effects, ndctl
from harness.hotplug.checks import FlagRule, Refused
from harness.hotplug.dmesg import find_splats, format_splats
from harness.hotplug.effects import Finding, HotplugState
from harness.hotplug.expectations import (
    Expected,
    KernelFacts,
    SelfHostedMemmap,
    no_memmap_flags,
    page_flags,
    self_hosted_memmap,
    virtio_mem_unplugged_flags,
)
from harness.hotplug.ports import PciePorts
from harness.hotplug.records import (
    Dimm,
    Nvdimm,
    PhysRange,
    Resize,
    Span,
    Unplug,
    UnplugResult,
    VirtioMem,
)
from harness.kconfig import KernelConfig
from harness.kconfig import load as load_config
from harness.kconfig import parse as parse_config
from harness.progress import logged
from harness.qemu.facts import facts as qemu_facts
from harness.qemu.machine import QemuMachine


class StepObserver(Protocol):
    """Told after each hotplug step (e.g. the page-flag recorder the plugin attaches)."""

    def __call__(self, vm: HotplugVM, step: str, addr: int, size: int) -> None: ...


Effects = Callable[[HotplugState, HotplugState], list[Finding]]


@dataclass(frozen=True)
class Sleep:
    """What a suspend to RAM did."""

    suspended: bool  # QEMU saw the guest enter S3
    errno: int  # the write's refusal (0: it returned after the resume)
    same_boot: bool  # the guest came back, not booted anew (its boot id kept)


@dataclass
class Step:
    """One hotplug step (``HotplugVM.step``): the state before it, what the act set."""

    name: str
    before: HotplugState
    span: Span | None = None  # the range the observers look at
    effects: Effects | None = None  # what the kernel must show afterwards
    refused: str = ""  # the kernel said no to the act: a failed check, after the observers


class HotplugVM:
    def __init__(self, machine: QemuMachine, overrides: dict[str, str] | None = None) -> None:
        self.machine = machine
        self.guest: GuestShell = machine.ready_guest()
        self.arch = machine.arch
        self.image = machine.config.image
        boot = self.guest.boot()
        self.facts = KernelFacts(
            arch=self.arch.name,
            release=boot.release,
            build=boot.build,
            config=self._kernel_config(boot.release),
            cmdline=boot.cmdline,
            memmap_on_memory_param=boot.memmap_on_memory,
            struct_page_size=boot.struct_page,
            section_bits=boot.section_bits,
            qemu_version=qemu_facts(machine.qemu).version,
            firmware_onlines_dimms=self.arch.firmware_onlines_dimms,
            overrides=dict(overrides or {}),
        )
        self.dimms: list[Dimm] = []  # plugged by this test and not yet removed
        self.virtio_mems: list[VirtioMem] = []
        self.nvdimms: list[Nvdimm] = []
        self.observers: list[StepObserver] = []
        self.ports = PciePorts(self.arch)  # for hot-plugged PCI devices (virtio-mem-pci)
        self.dmesg_start = 0  # dmesg lines of this boot before the scenario began
        self._page_ext = self._page_ext_table_pages()

    def _kernel_config(self, release: str) -> KernelConfig:
        """The image's config, else the running kernel's /proc/config.gz (IKCONFIG_PROC).

        :raises InfrastructureError: neither exists: the expectations have nothing to go by.
        """
        if self.image.config is not None:
            return load_config(self.image.config)
        res = self.guest.run("zcat /proc/config.gz", check=False)
        if res.status == 0 and res.stdout.strip():
            return parse_config(res.stdout, "/proc/config.gz")
        raise InfrastructureError(
            f"no kernel config for {release}: none in the image ({self.image.spec}) and no "
            "/proc/config.gz in the guest; give the kernel's config (a build: directory, or "
            "PATH,MODULES with config-RELEASE beside the modules) or build it with "
            "CONFIG_IKCONFIG_PROC"
        )

    # -- devices -------------------------------------------------------------------------

    @logged
    def plug_dimm(
        self, size: int, *, node: int | None = None, addr: int | None = None, validate: bool = True
    ) -> Dimm:
        with self.step(f"hot-add of a {size >> 20} MiB DIMM") as step:
            dimm = devices.plug_dimm(self.machine, size, node=node, addr=addr, validate=validate)
            self.dimms.append(dimm)
            step.name, step.span = f"{dimm.id} hot-added", dimm
            step.effects = lambda before, after: self._added(dimm, dimm.node, before, after)
        return dimm

    def _added(
        self,
        dev: Span,
        node: int | None,
        before: HotplugState,
        after: HotplugState,
        resource: str = "System RAM",
    ) -> list[Finding]:
        layout = after.layout
        blocks = layout.covering(dev.addr, dev.span)
        online = [b for b in blocks if b.online]  # auto-onlined (policy, pseries DLPAR)
        per_block = self.arch.adds_per_block and resource == "System RAM"
        found = effects.added(
            before,
            after,
            dev.addr,
            dev.span,
            self.memmap_pages(dev.span),
            zones=not online,
            page_ext=self._page_ext_pages(online, layout),
            unit=layout.block_size if per_block else None,
            node=node,
            resource=resource,
        )
        if online:
            found += effects.onlined(
                before, after, layout, online, self.guest.page_size(), self._vmemmap(len(blocks))
            )
        return found

    @logged
    def unplug_dimm(self, dimm: Dimm, *, timeout: float = 30.0) -> UnplugResult:
        with self.step(f"removal of {dimm}", dimm) as step:
            result = devices.unplug_dimm(self.machine, dimm, timeout=timeout)
            step.name = f"{dimm.id} unplug: {result.outcome.name.lower()}"
            if result.outcome is Unplug.DELETED:
                self.dimms.remove(dimm)
                step.effects = lambda before, after: self._removed(dimm, dimm.node, before, after)
        return result

    def _removed(
        self,
        dev: Span,
        node: int | None,
        before: HotplugState,
        after: HotplugState,
        resource: str = "System RAM",
    ) -> list[Finding]:
        layout = before.layout
        was_online = [b for b in layout.covering(dev.addr, dev.span) if b.online]
        found = effects.removed(
            before,
            after,
            dev.addr,
            dev.span,
            self.memmap_pages(dev.span),
            zones=not was_online,
            page_ext=self._page_ext_pages(was_online, layout),
            node=node,
            resource=resource,
        )
        if was_online:  # the eject offlined them first
            found += effects.offlined(
                before,
                after,
                after.layout,
                was_online,
                self.guest.page_size(),
                self._vmemmap(dev.span // layout.block_size),
            )
        return found

    @logged
    def create_cxl_ram_region(self, memdev: str, size: int) -> tuple[cxl.Region, PhysRange]:
        """A RAM region on a CXL memdev, which dax_cxl and kmem turn into System RAM: the
        region and that range, the add's effects checked (its memory on the window's node).

        :raises AssertionError: no System RAM (kmem) came of it.
        """
        with self.step(f"CXL RAM region on {memdev}") as step:
            region = cxl.create_ram_region(self.guest, memdev, size)
            ram = cxl.kmem_range(self.guest)
            if ram is None:
                raise AssertionError(
                    f"{region.name} committed, but no System RAM (kmem) came of it (dax_cxl, "
                    f"kmem): dax devices {cxl.dax_devices(self.guest)}"
                )
            step.span = ram
            step.effects = lambda before, after: self._added(
                ram, _node_of(after, ram), before, after, KMEM
            )
        return region, ram

    @logged
    def release_from_kmem(self, chardev: str, ram: PhysRange) -> int:
        """Unbind a dax device from kmem (its memory offline), which removes the memory: 0
        and the removal's effects checked, or the errno of the refusal."""
        with self.step(f"{chardev} released from kmem", ram) as step:
            node = _node_of(step.before, ram)
            refused = ndctl.release_from_kmem(self.guest, chardev)
            if not refused:
                step.effects = lambda before, after: self._removed(ram, node, before, after, KMEM)
        return refused

    @logged
    def plug_virtio_mem(self, max_size: int, *, dynamic_memslots: bool = False) -> VirtioMem:
        dev = devices.plug_virtio_mem(
            self.machine, self.ports, max_size, dynamic_memslots=dynamic_memslots
        )
        self.virtio_mems.append(dev)
        return dev

    def virtio_mem(self, device_id: str) -> VirtioMem:
        """A virtio-mem device QEMU already has (e.g. cold-plugged), as it is now."""
        info = devices.memory_devices(self.machine)[device_id]
        dev = devices.refresh_virtio_mem(
            self.machine,
            VirtioMem(
                id=device_id,
                memdev=str(info["memdev"]).rsplit("/", 1)[-1],
                max_size=int(info["max-size"]),
            ),
        )
        if dev not in self.virtio_mems:
            self.virtio_mems.append(dev)
        return dev

    @logged
    def resize(self, dev: VirtioMem, requested: int, *, timeout: float = 60.0) -> Resize:
        was, total = dev.size, self.mem_total() if requested > dev.size else 0
        resize = devices.resize_virtio_mem(self.machine, dev, requested, timeout=timeout)
        if total and resize.size > was:
            self._wait_plugged_online(dev, total + resize.size - was)
        for observe in self.observers:
            observe(self, f"{dev.id} resized to {requested >> 20} MiB", dev.addr, dev.max_size)
        return resize

    def reported_sizes(self, dev: VirtioMem, mark: int, final: int) -> list[int]:
        """What QEMU's size-change events said of ``dev`` since the event ``mark``, waiting
        (bounded) for the one of ``final`` (devices.reported_sizes)."""
        return devices.reported_sizes(self.machine, dev, mark, final)

    def _wait_plugged_online(self, dev: VirtioMem, mem_total: int) -> None:
        """The driver hands each sub-block to the buddy after QEMU acknowledged its plug
        (virtio_mem_sbm_plug_any_sb -> virtio_mem_fake_online), so QEMU's size change comes
        first and no event marks the end: wait in the guest until MemTotal shows it, where the
        device's blocks are online (offline ones add nothing to MemTotal)."""
        if not all(b.online for b in self.blocks(dev)):
            return
        self.guest.wait_until(
            f"[ $(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo) -ge {mem_total >> 10} ]",
            timeout=10.0,
            what=f"MemTotal of {mem_total >> 10} kB after {dev.id} plugged {dev.size >> 20} MiB",
        )

    @logged
    def unplug_virtio_mem(self, dev: VirtioMem) -> UnplugResult:
        result = devices.unplug_virtio_mem(self.machine, self.ports, dev)
        if result.outcome is Unplug.DELETED:
            self.virtio_mems.remove(dev)
        return result

    @logged
    def plug_nvdimm(
        self, size: int, *, label_size: int | None = None, addr: int | None = None
    ) -> Nvdimm:
        dev = devices.plug_nvdimm(self.machine, size, label_size=label_size, addr=addr)
        self.nvdimms.append(dev)  # QEMU cannot unplug NVDIMMs: the guest is not reused
        return dev

    def nvdimm(self, device_id: str) -> Nvdimm:
        """An NVDIMM QEMU already has (e.g. cold-plugged)."""
        info = devices.memory_devices(self.machine)[device_id]
        dev = Nvdimm(
            id=device_id,
            memdev=str(info["memdev"]).rsplit("/", 1)[-1],
            size=int(info["size"]),
            addr=int(info["addr"]),
        )
        self.nvdimms.append(dev)
        return dev

    @logged
    def machine_unplug(self, device: str, memdev: str) -> UnplugResult:
        """device_del for any memory device, with QEMU's verdict."""
        return devices.unplug(self.machine, device, memdev, ports=self.ports)

    def memory_devices(self) -> dict[str, dict[str, object]]:
        return devices.memory_devices(self.machine)

    # -- memory blocks -------------------------------------------------------------------

    def memory(self) -> MemoryLayout:
        return self.guest.memory()

    @property
    def block_size(self) -> int:
        """Bytes per memory block (fixed for a boot)."""
        return self.guest.block_size()

    def blocks(self, where: Span) -> list[MemoryBlock]:
        """The guest's memory blocks inside a device's (or a PhysRange's) physical range."""
        return self.memory().covering(where.addr, where.span)

    @logged
    def set_state(self, blocks: Iterable[MemoryBlock], state: str) -> dict[int, int]:
        """Write ``state`` to each block in turn; block index -> errno (0 = done)."""
        return self.guest.set_block_states([b.index for b in blocks], state)

    @logged
    def online(self, dev: Span, how: str = "online_movable") -> list[MemoryBlock]:
        """Online the offline blocks of a device (or a range: dax kmem's System RAM); fail
        with the errno of any refusal."""
        with self.step(f"{how} of {dev}", dev) as step:
            blocks = step.before.layout.covering(dev.addr, dev.span)
            going = [b for b in blocks if not b.online]
            step.refused = _refusals(self.set_state(going, how), how)
            indices = {b.index for b in going}
            step.effects = lambda before, after: effects.onlined(
                before,
                after,
                after.layout,
                [b for b in after.layout.covering(dev.addr, dev.span) if b.index in indices],
                self.guest.page_size(),
                self._vmemmap(len(blocks)),
            )
        return self.memory().covering(dev.addr, dev.span)

    @logged
    def offline(self, dev: Span) -> list[MemoryBlock]:
        with self.step(f"offline of {dev}", dev) as step:
            blocks = step.before.layout.covering(dev.addr, dev.span)
            going = [b for b in blocks if b.online]
            step.refused = _refusals(self.set_state(going, "offline"), "offline")
            step.effects = lambda before, after: effects.offlined(
                before,
                after,
                after.layout,
                going,
                self.guest.page_size(),
                self._vmemmap(len(blocks)),
            )
        return self.memory().covering(dev.addr, dev.span)

    @contextmanager
    def step(self, name: str, span: Span | None = None) -> Iterator[Step]:
        """One hotplug step: the state before it, the act (the body, which may name the step
        anew and says what the kernel must show), the observers, then the state after it
        and its effects checked (harness.hotplug.effects: pure arithmetic over the two
        states). A refusal the body recorded fails the step after the observers saw it."""
        step = Step(name, self.state(), span=span)
        yield step
        if step.span is not None:
            for observe in self.observers:
                observe(self, step.name, step.span.addr, step.span.span)
        if step.refused:
            raise Refused(step.refused)
        if step.effects is not None:
            after = self.state()
            found = step.effects(step.before, after)
            found += effects.node_invariants(after, self.guest.page_size())
            text = effects.report(step.name, found)
            if text:
                raise AssertionError(text)

    # -- sleep ----------------------------------------------------------------------------

    @logged
    def suspend_to_ram(self, timeout: float = 20.0) -> Sleep:
        """S3 and back: the guest writes "mem" to /sys/power/state (the write returns once it
        resumed), QEMU reports SUSPEND, memhp wakes it (system_wakeup, WAKEUP). A kernel
        that refuses to suspend fails the write instead: its errno, and no SUSPEND."""
        boot_id = self.guest.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()
        mark = self.machine.events.mark()
        self.guest.run(
            "rm -f /tmp/memhp-s3; (echo mem > /sys/power/state; echo $? > /tmp/memhp-s3.part; "
            "mv /tmp/memhp-s3.part /tmp/memhp-s3) >/tmp/memhp-s3.err 2>&1 </dev/null &"
        )
        suspended = devices.wait_suspend(self.machine, mark, timeout)
        if suspended:
            self.machine.qmp("system_wakeup")
            devices.wait_wakeup(self.machine, mark, timeout)
        self.guest.wait_until("[ -e /tmp/memhp-s3 ]", timeout=timeout, what="the suspend's end")
        out = self.guest.run(
            "cat /tmp/memhp-s3 /tmp/memhp-s3.err; cat /proc/sys/kernel/random/boot_id"
        )
        lines = out.stdout.split()
        status, again = int(lines[0]), lines[-1]
        err = write_errno(out.stdout) if status else 0
        return Sleep(suspended=suspended, errno=err, same_boot=again == boot_id)

    # -- reboots --------------------------------------------------------------------------

    @logged
    def reset(self) -> None:
        """QMP system_reset; back once the guest booted again (the memhp marker reboot=True)."""
        self.machine.reset()
        self._rebooted()

    @logged
    def reboot(self) -> None:
        """The guest reboots itself (busybox reboot -f); back once it booted again."""
        mark = self.machine.console_mark()
        self.guest.run("(sleep 1; reboot -f) >/dev/null 2>&1 </dev/null &")
        self.machine.wait_rebooted(mark)
        self._rebooted()

    def _rebooted(self) -> None:
        self.guest = self.machine.ready_guest()
        self.dmesg_start = 0  # a new boot: its whole log belongs to the scenario

    # -- effects beyond page flags --------------------------------------------------------

    def state(self) -> HotplugState:
        """Zones, MemTotal, node states, iomem, firmware memmap, memory blocks: one round
        trip."""
        return HotplugState.parse(self.guest.read_files(effects.STATE_FILES, LAYOUT_LINKS))

    def memmap_pages(self, size: int) -> int:
        """Pages of memmap that ``size`` bytes of hot-added memory need (struct pages of the
        kernel's own size, per section, rounded up to pages)."""
        f = self.facts
        return effects.memmap_pages_of(size, f.section_size, self.guest.page_size(), f.struct_page)

    def _page_ext_table_pages(self) -> int:
        """nr_memmap_pages of one section's page_ext table, from the boot log's total over
        the sections present at boot; 0 for a kernel without CONFIG_PAGE_EXTENSION."""
        if not self.facts.config.enabled("CONFIG_PAGE_EXTENSION"):
            return 0
        boot = self.guest.boot()
        sections = boot.blocks * boot.block_size // self.facts.section_size
        try:
            return effects.page_ext_table_pages(boot.page_ext_line, sections, boot.page_size)
        except ValueError as err:
            raise InfrastructureError(f"cannot size this kernel's page_ext tables: {err}") from err

    def _page_ext_pages(self, blocks: Sequence[MemoryBlock], layout: MemoryLayout) -> int:
        """The page_ext tables of ``blocks``' sections (allocated at online, freed at offline)."""
        return self._page_ext * len(blocks) * layout.block_size // self.facts.section_size

    def _vmemmap(self, device_blocks: int) -> int:
        """Pages of each block that hold its own memmap (memmap_on_memory), else 0."""
        return self.self_hosted_memmap(device_blocks).value.pages

    # -- page flags ----------------------------------------------------------------------

    def page_flags(self, blocks: Sequence[MemoryBlock]) -> dict[int, tuple[range, list[int]]]:
        """/proc/kpageflags of each block (index -> its pfns, their values), in one read of
        the pfns the blocks span.

        :raises AssertionError: the file ends (at max_pfn) inside a block: the kernel does
            not report memory it has a block for.
        """
        if not blocks:
            return {}
        size, page = self.block_size, self.guest.page_size()
        ranges = {b.index: kpageflags.pfn_range(b.phys_index * size, size, page) for b in blocks}
        start = min(r.start for r in ranges.values())
        stop = max(r.stop for r in ranges.values())
        values = self.guest.kpageflags(range(start, stop))
        end = start + len(values)
        cut = sorted(i for i, r in ranges.items() if r.stop > end)
        if cut:
            raise AssertionError(
                f"/proc/kpageflags ends at pfn {end:#x} (max_pfn), inside memory{cut}: the "
                "kernel does not report pages of memory it has blocks for (add_pages -> "
                "update_end_of_memory_vars raises max_pfn on every hot-add)"
            )
        return {i: (r, values[r.start - start : r.stop - start]) for i, r in ranges.items()}

    def histograms(self, blocks: Sequence[MemoryBlock]) -> dict[int, tuple[range, Histogram]]:
        return {i: (pfns, Histogram.of(v)) for i, (pfns, v) in self.page_flags(blocks).items()}

    def flags(self, block: MemoryBlock) -> Histogram:
        return self.histograms([block])[block.index][1]

    def expect_flags(self, blocks: Sequence[MemoryBlock], *rules: FlagRule, why: str = "") -> None:
        report = checks.flags_report(self.histograms(blocks), rules, why)
        if report:
            raise AssertionError(report)

    def self_hosted_memmap(
        self, device_blocks: int, facts: KernelFacts | None = None
    ) -> Expected[SelfHostedMemmap]:
        """What memmap_on_memory should put at the start of each block of a device."""
        return self_hosted_memmap(
            facts or self.facts,
            device_blocks=device_blocks,
            block_size=self.block_size,
            page_size=self.guest.page_size(),
            pageblock=self.guest.pageblock_size(),
        )

    def expect_memmap(
        self, blocks: Sequence[MemoryBlock], expected: Expected[SelfHostedMemmap]
    ) -> None:
        """memmap_on_memory: each block starts with its own memmap pages, then the rest
        behaves like any online block."""
        seen = self.page_flags(blocks)
        skip = expected.value.pages
        rest = {
            i: (range(pfns.start + skip, pfns.stop), Histogram.of(values[skip:]))
            for i, (pfns, values) in seen.items()
        }
        report = checks.memmap_report(
            seen, expected.value.pages, expected.value.flags, expected.why
        )
        online = page_flags(self.facts, "online")
        report = report or checks.flags_report(rest, online.value, online.why)
        if report:
            raise AssertionError(report)

    def expect_virtio_mem(self, dev: VirtioMem, *, was_online: bool) -> None:
        """Per block of the device: plugged vs unplugged pages and their flags."""
        seen = self.histograms(self.blocks(dev))
        expected = virtio_mem_unplugged_flags(was_online=was_online)
        report = checks.virtio_mem_report(
            seen,
            unplugged=expected.value,
            plugged_bytes=dev.size,
            page_size=self.guest.page_size(),
            why=expected.why,
        )
        if report:
            raise AssertionError(report)

    def expect_no_memmap(self, start: int, size: int, why: str) -> None:
        """Every pfn of [start, start + size) reads as having no online memmap (ZONE_DEVICE,
        offline memory), and every one of them is readable (a rule over no pfns, or over
        the part before max_pfn, proves nothing)."""
        pfns = kpageflags.pfn_range(start, size, self.guest.page_size())
        values = self.guest.kpageflags(pfns)
        expected = no_memmap_flags(self.facts)
        hist = Histogram.of(values)
        if len(values) != len(pfns) or hist.total != hist.exactly(expected.value):
            raise AssertionError(
                f"pfns {pfns.start:#x}-{pfns.stop - 1:#x}: expected every one readable and "
                f"{kpageflags.format_flags(expected.value)} ({expected.why}; {why}); "
                f"seen {hist.summary()} over {len(values)} of {len(pfns)} pfns"
            )

    def expect_blocks(
        self, blocks: Sequence[MemoryBlock], state: str, zone: str | None = None, why: str = ""
    ) -> None:
        report = checks.blocks_report(blocks, state, zone, why)
        if report:
            raise AssertionError(report)

    def expect(self, expected: Expected[object], seen: object) -> None:
        if expected.value != seen:
            raise AssertionError(
                f"{expected.name}: expected {expected.value}, seen {seen}\n"
                f"  expectation: {expected.why}"
            )

    def mem_total(self) -> int:
        return self.guest.meminfo()["MemTotal"]

    def expect_no_splats(self, allowed: Sequence[str] = ()) -> None:
        """Fail if the kernel logged a splat (WARNING, BUG, Oops, ...) since ``dmesg_start``,
        other than the ``allowed`` patterns (a test's dmesg_allow)."""
        lines = self.guest.dmesg()[self.dmesg_start :]
        splats = find_splats(lines, allowed)
        if splats:
            raise AssertionError(format_splats(splats, lines))

    # -- cleanup -------------------------------------------------------------------------

    def cleanup(self, allowed: Sequence[str] = ()) -> bool:
        """Offline and unplug what the test left plugged; True if the guest is as found.

        The kernel's refusal or an infrastructure error only keeps the guest from being
        reused. A kernel failure meanwhile is the scenario's: a panic or lockup propagates,
        an effect not as the kernel must show it fails, and so does a splat in dmesg (other
        than the page dump a refused offline prints)."""
        refused = False
        for dimm in list(self.dimms):
            try:
                self.offline(dimm)
            except Refused:
                refused = True
            except InfrastructureError:
                return False
            with contextlib.suppress(InfrastructureError):
                self.unplug_dimm(dimm, timeout=15.0)
        if self.machine.alive():
            self.expect_no_splats([*allowed, *(REFUSAL_NOISE if refused else ())])
        # QEMU 7.2 removes neither virtio-mem nor NVDIMMs: such a guest is not reused.
        return not self.dimms and not self.virtio_mems and not self.nvdimms


# What the kernel prints when it refuses to offline a block (has_unmovable_pages'
# dump_page, offline_pages' "Offline failed"): the refusal itself, not a splat.
REFUSAL_NOISE = (r"page dumped because: unmovable page", r"Offline failed")


KMEM = "System RAM (kmem)"  # the resource dax kmem adds memory as (add_memory_driver_managed)


def _node_of(state: HotplugState, span: Span) -> int | None:
    """The node the range's blocks are linked under (None without blocks)."""
    nodes = {b.node for b in state.layout.covering(span.addr, span.span)}
    return nodes.pop() if len(nodes) == 1 else None


def pin_with_slab(vm: HotplugVM, blocks: Sequence[MemoryBlock]) -> int:
    """Fill ``blocks`` (online, ZONE_NORMAL, where new kernel allocations go first) with slab
    pages (tmpfs inodes and dentries), which offlining cannot migrate; how many landed there.

    :raises ConditionNotMet: none did: nothing pins the blocks, the scenario proves nothing.
    """
    vm.guest.run("mkdir -p /tmp/pin && cd /tmp/pin && seq 1 20000 | xargs touch")
    pinned = sum(h.with_flag(KPF.SLAB) for _, h in vm.histograms(blocks).values())
    if not pinned:
        where = ", ".join(f"memory{b.index}" for b in blocks)
        raise ConditionNotMet(f"set-up: no slab page landed in {where}: nothing pins it")
    return pinned


def _refusals(results: dict[int, int], action: str) -> str:
    """'online_movable refused: memory32: EBUSY', or '' when every block took it."""
    failed = {i: e for i, e in results.items() if e}
    detail = ", ".join(f"memory{i}: {errno.errorcode.get(e, e)}" for i, e in failed.items())
    return f"{action} refused: {detail}" if failed else ""
