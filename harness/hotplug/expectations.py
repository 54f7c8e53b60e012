"""What a scenario expects, derived from facts about the kernel and QEMU under test.

One place, keyed by facts read from the guest, its image and QEMU (never by a test's own
if-ladder). Each version-dependent rule cites the kernel change that introduced it. Every
answer carries ``why``, which failure messages print, and any rule can be overridden from
the command line (``--memhp-expect NAME=VALUE``) by a developer whose patched kernel is meant
to behave differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness.arch import Arch
from harness.errors import UsageError
from harness.guest.kpageflags import KPF
from harness.hotplug.checks import FlagRule, at_least, every_page_is, no_page
from harness.hotplug.records import Unplug
from harness.kconfig import KernelConfig

T = TypeVar("T", covariant=True)  # an Expected[str] is an Expected[object]

ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")
# Expectations a developer may override (--memhp-expect NAME=VALUE): name -> values.
OVERRIDES: dict[str, tuple[str, ...]] = {
    "online_policy": ONLINE_TYPES,
    "memmap_init": ("reserved", "offline"),
    "no_memmap_flags": ("nopage", "zero"),
    "virtio_mem_device_del": tuple(u.value for u in Unplug),
}
OVERRIDABLE = tuple(OVERRIDES)


def parse_overrides(options: list[str]) -> dict[str, str]:
    """--memhp-expect NAME=VALUE options; UsageError naming what is allowed."""
    out = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in OVERRIDES:
            raise UsageError(
                f"--expect {option}: give NAME=VALUE with NAME one of "
                f"{', '.join(sorted(OVERRIDES))}"
            )
        if value not in OVERRIDES[name]:
            raise UsageError(f"--expect {option}: {name} is one of {', '.join(OVERRIDES[name])}")
        out[name] = value
    return out


@dataclass(frozen=True)
class KernelFacts:
    """What the expectations may depend on."""

    arch: str
    release: str  # uname -r
    config: KernelConfig
    cmdline: tuple[str, ...]
    qemu_version: tuple[int, int, int]
    firmware_onlines_dimms: bool = False  # pseries DLPAR
    build: str = ""  # uname -v
    overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> tuple[int, int, int]:
        """The upstream version, sublevel included: uname -r, unless `uname -v` names the
        Debian package version (Debian 6.1 releases read 6.1.0-57 but are 6.1.192)."""
        debian = re.search(r"Debian (\d+\.\d+\.\d+)", self.build)
        return parse_release(debian.group(1) if debian else self.release)

    def param(self, name: str) -> str | None:
        """Value of a kernel command-line parameter (last one wins, as in the kernel)."""
        value = None
        for arg in self.cmdline:
            key, _, val = arg.partition("=")
            if key == name:
                value = val
        return value


@dataclass(frozen=True)
class Expected(Generic[T]):
    name: str
    value: T
    why: str

    def __str__(self) -> str:
        return f"{self.name} = {self.value} ({self.why})"


def parse_release(release: str) -> tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return (0, 0, 0)
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _override(facts: KernelFacts, name: str) -> Expected[str] | None:
    value = facts.overrides.get(name)
    if value is None:
        return None
    if value not in OVERRIDES[name]:  # parse_overrides checked it up front
        raise UsageError(f"--expect {name}={value}: not one of {', '.join(OVERRIDES[name])}")
    return Expected(name, value, "overridden on the command line (--expect)")


# -- online policy ---------------------------------------------------------------------------

# CONFIG_MHP_DEFAULT_ONLINE_TYPE_* choice: upstream 44d46b76c3a4 ("mm: add build-time option
# to set hotplug default type", v6.14), backported by Debian to 6.12.110. Before it, the
# bool CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE ("memory_hotplug: introduce
# CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE", v4.7) chose between offline and online.
_ONLINE_TYPE_CHOICE = {
    "MHP_DEFAULT_ONLINE_TYPE_OFFLINE": "offline",
    "MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO": "online",
    "MHP_DEFAULT_ONLINE_TYPE_ONLINE_KERNEL": "online_kernel",
    "MHP_DEFAULT_ONLINE_TYPE_ONLINE_MOVABLE": "online_movable",
}


def default_online_policy(facts: KernelFacts) -> Expected[str]:
    """What /sys/devices/system/memory/auto_online_blocks reads after boot."""
    name = "online_policy"
    if (o := _override(facts, name)) is not None:
        return o
    param = facts.param("memhp_default_state")
    if param in ONLINE_TYPES:
        return Expected(name, param, f"memhp_default_state={param} on the command line")
    for option, policy in _ONLINE_TYPE_CHOICE.items():
        if facts.config.get(option) == "y":
            return Expected(
                name,
                policy,
                f"{facts.config.line(option)} (choice added by "
                "44d46b76c3a4, v6.14; Debian 6.12.110+)",
            )
    option = "MEMORY_HOTPLUG_DEFAULT_ONLINE"
    if facts.config.get(option) is None and not facts.config.options:
        raise LookupError(
            f"no kernel config for {facts.release}: cannot tell its default "
            "online policy (give --memhp-expect online_policy=...)"
        )
    policy = "online" if facts.config.get(option) == "y" else "offline"
    return Expected(
        name,
        policy,
        f"{facts.config.line(option)} (no MHP_DEFAULT_ONLINE_TYPE choice in this kernel)",
    )


@dataclass(frozen=True)
class BlockState:
    state: str  # "online" or "offline"
    zone: str | None  # zone of an online block


def hot_added_block_state(facts: KernelFacts) -> Expected[BlockState]:
    """State and zone of a DIMM's memory blocks right after the guest acknowledged it."""
    name = "hot_added_blocks"
    policy = default_online_policy(facts)
    if facts.firmware_onlines_dimms and policy.value in ("offline", "online"):
        # pseries: dlpar_add_lmb() -> dlpar_online_lmb() -> device_online(), which onlines
        # with MMOP_ONLINE (default zone) whatever auto_online_blocks says. Only a policy
        # that onlines at add time, before DLPAR does, picks another zone.
        return Expected(
            name,
            BlockState("online", "Normal"),
            f"pseries DLPAR onlines new LMBs itself (dlpar_online_lmb), "
            f"online policy {policy.value}",
        )
    zone = {
        "offline": None,
        # MMOP_ONLINE takes the default zone: Normal for the contig-zones online_policy,
        # unless the range lies in ZONE_MOVABLE's span (default_zone_for_pfn()).
        "online": "Normal",
        "online_kernel": "Normal",
        "online_movable": "Movable",
    }[policy.value]
    state = "offline" if policy.value == "offline" else "online"
    return Expected(name, BlockState(state, zone), f"online policy {policy.value}: {policy.why}")


# -- page flags ------------------------------------------------------------------------------


def no_memmap_flags(facts: KernelFacts) -> Expected[int]:
    """What /proc/kpageflags reports for a pfn without an online memmap (offline block,
    ZONE_DEVICE, hole): KPF_NOPAGE, or 0 since v6.16."""
    name = "no_memmap_flags"
    if (o := _override(facts, name)) is not None:
        return Expected(name, (1 << KPF.NOPAGE) if o.value == "nopage" else 0, o.why)
    if facts.version >= (6, 16, 0):
        # kpage_read() writes 0 when pfn_to_online_page() is NULL and never passes NULL to
        # stable_page_flags(): NOPAGE is gone, such pfns look like pages with no flags.
        return Expected(
            name,
            0,
            "pfn_to_online_page() is NULL and kpage_read() reports 0 "
            '("fs/proc/page: refactor to reduce code duplication", v6.16)',
        )
    return Expected(
        name,
        1 << KPF.NOPAGE,
        "pfn_to_online_page() is NULL, so stable_page_flags() reports KPF_NOPAGE (fs/proc/page.c)",
    )


def page_flags(facts: KernelFacts, state: str) -> Expected[tuple[FlagRule, ...]]:
    """/proc/kpageflags of a hot-added block in ``state``."""
    name = "page_flags"
    if state == "offline":
        none = no_memmap_flags(facts)
        return Expected(
            name, (every_page_is(none.value),), f"offline sections are not online: {none.why}"
        )
    # Onlining hands every page to the buddy: generic_online_page() -> __free_pages_core()
    # clears PG_reserved (6.1) or PageOffline (6.12, "mm/memory_hotplug: initialize memmap
    # of !ZONE_DEVICE with PageOffline() instead of PageReserved()", v6.12). A few dozen
    # pages are allocated at once, so BUDDY is a majority, not all.
    return Expected(
        name,
        (no_page(KPF.NOPAGE, KPF.RESERVED, KPF.OFFLINE), at_least(KPF.BUDDY, 0.8)),
        "onlined pages are freed to the buddy allocator (generic_online_page)",
    )


# -- removal -------------------------------------------------------------------------------


def memmap_on_memory(facts: KernelFacts) -> Expected[bool]:
    """Whether this kernel can put a hot-added block's memmap on the block itself."""
    name = "memmap_on_memory_supported"
    option = "MHP_MEMMAP_ON_MEMORY"
    return Expected(
        name,
        facts.config.get(option) == "y",
        f'{facts.config.line(option)} ("mm,memory_hotplug: allocate memmap on '
        'the hot-added range", v5.13)',
    )


def memmap_on_memory_mode(facts: KernelFacts) -> Expected[str | None]:
    """What memory_hotplug.memmap_on_memory= asks of this kernel: "on", "force" or None."""
    name = "memmap_on_memory_mode"
    mode = facts.param("memory_hotplug.memmap_on_memory")
    if mode in ("1", "y", "Y", "on"):
        return Expected(name, "on", f"memory_hotplug.memmap_on_memory={mode}")
    if mode == "force":
        if facts.version < (6, 6, 0):
            # Before the force mode the parameter is a bool, and kstrtobool() reads a
            # leading 'f' as false.
            return Expected(
                name,
                None,
                "memmap_on_memory=force reads as N before v6.6 "
                '(a bool parameter; "mm/memory_hotplug: support memmap_on_memory '
                'when memmap is not aligned to pageblocks" added force)',
            )
        return Expected(name, "force", "memory_hotplug.memmap_on_memory=force (v6.6)")
    return Expected(name, None, "memory_hotplug.memmap_on_memory not on the command line")


def dimm_unplug(facts: KernelFacts) -> Expected[frozenset[Unplug]]:
    """Outcomes of device_del for a DIMM whose blocks are online (the guest offlines them)."""
    name = "dimm_unplug"
    ok = frozenset({Unplug.DELETED})
    if not facts.firmware_onlines_dimms:
        return Expected(name, ok, "ACPI eject offlines the (movable) blocks, then removes them")
    if memmap_on_memory_mode(facts).value and memmap_on_memory(facts).value:
        return Expected(name, ok, "memmap_on_memory: each LMB's memmap lives inside it")
    if default_online_policy(facts).value == "online_movable":
        return Expected(name, ok, "LMBs onlined to ZONE_MOVABLE at add time hold no memmap")
    if facts.version >= (6, 12, 0):
        # Without memmap_on_memory the vmemmap of later LMBs is allocated from the earlier,
        # already online (Normal) LMBs of the same DIMM; DLPAR removal then meets an
        # unmovable page and rolls back (MEM_UNPLUG_ERROR + DEVICE_UNPLUG_GUEST_ERROR), or
        # fails on the first LMB and tells QEMU nothing. Seen at times, not always.
        return Expected(
            name,
            frozenset({Unplug.DELETED, Unplug.REFUSED, Unplug.NO_EVENT}),
            "pseries 6.12 with the memmap of later LMBs in earlier ones: "
            "removal may be refused, with or without an event",
        )
    return Expected(name, ok, "pseries DLPAR removal of Normal LMBs holding no memmap")


# -- memmap_on_memory ----------------------------------------------------------------------

STRUCT_PAGE = 64  # sizeof(struct page) on 64-bit kernels without debug options


def memmap_init(facts: KernelFacts) -> Expected[str]:
    """How hot-added memmap is initialised before onlining: 'reserved' or 'offline'.

    Visible only on pages onlining never frees, such as memmap_on_memory vmemmap pages.
    """
    name = "memmap_init"
    if (o := _override(facts, name)) is not None:
        return o
    if facts.version >= (6, 11, 0):
        return Expected(
            name,
            "offline",
            '"mm/memory_hotplug: initialize memmap of '
            '!ZONE_DEVICE with PageOffline() instead of PageReserved()" (v6.11)',
        )
    return Expected(
        name,
        "reserved",
        "before v6.11 hot-added memmap is initialised "
        "PG_reserved (memmap_init_range, MEMINIT_HOTPLUG)",
    )


@dataclass(frozen=True)
class SelfHostedMemmap:
    pages: int  # leading pfns of each block that hold its memmap (0: none)
    flags: int  # their /proc/kpageflags value


def self_hosted_memmap(
    facts: KernelFacts, *, device_blocks: int, block_size: int, page_size: int, pageblock: int
) -> Expected[SelfHostedMemmap]:
    """The vmemmap pages memmap_on_memory puts at the start of each hot-added block."""
    name = "self_hosted_memmap"
    none = SelfHostedMemmap(0, 0)
    mode = memmap_on_memory_mode(facts)
    if mode.value is None:
        return Expected(name, none, mode.why)
    supported = memmap_on_memory(facts)
    if not supported.value:
        return Expected(name, none, supported.why)
    if facts.version < (6, 6, 0) and device_blocks != 1:
        return Expected(
            name,
            none,
            "before v6.6 only a device of exactly one memory block "
            "gets its memmap on itself (mhp_supports_memmap_on_memory(size))",
        )
    pages = block_size // page_size * STRUCT_PAGE // page_size
    if pages * page_size % pageblock:
        # The vmemmap must fill whole pageblocks; "force" pads it ("mm/memory_hotplug:
        # support memmap_on_memory when memmap is not aligned to pageblocks", v6.6).
        if mode.value != "force":
            return Expected(
                name,
                none,
                f"a block's memmap ({pages} pages) does not fill whole "
                f"{pageblock >> 10} KiB pageblocks; only memmap_on_memory=force "
                "pads it (v6.6)",
            )
        per_block = pageblock // page_size
        pages = -(-pages // per_block) * per_block
    init = memmap_init(facts)
    value = 1 << KPF.OWNER_PRIVATE
    if init.value == "reserved":
        value |= 1 << KPF.RESERVED
    since = (
        'per memory block since "mm/memory_hotplug: split memmap_on_memory requests '
        'across memblocks" (v6.6)'
        if device_blocks != 1
        else "one-block device"
    )
    return Expected(
        name,
        SelfHostedMemmap(pages, value),
        f"{pages} pfns of memmap per block ({since}), marked "
        f"PG_vmemmap_self_hosted (OWNER_PRIVATE) and memmap_init={init.value}: "
        f"{init.why}",
    )


# -- virtio-mem ----------------------------------------------------------------------------


def virtio_mem_unplugged_flags(*, was_online: bool) -> Expected[int]:
    """kpageflags of unplugged virtio-mem sub-blocks inside an online memory block.

    Both kernels: virtio_mem_set_fake_offline() marks them PageOffline; sub-blocks that were
    never onlined also carry PG_dirty ("hand to generic_online_page() later"). Never
    RESERVED (6.1 clears it; 6.12 initialises the memmap PageOffline).
    """
    value = 1 << KPF.OFFLINE
    if not was_online:
        value |= 1 << KPF.DIRTY
        return Expected(
            "virtio_mem_unplugged",
            value,
            "never-onlined unplugged sub-blocks: PageOffline + PG_dirty "
            "(virtio_mem_set_fake_offline(onlined=false))",
        )
    return Expected(
        "virtio_mem_unplugged",
        value,
        "sub-blocks unplugged after onlining: PageOffline only (virtio_mem_fake_offline())",
    )


def virtio_mem_unplug(facts: KernelFacts) -> Expected[frozenset[Unplug]]:
    """device_del of a virtio-mem device whose size is 0, by QEMU version."""
    name = "virtio_mem_device_del"
    if (o := _override(facts, name)) is not None:
        return Expected(name, frozenset({Unplug(o.value)}), o.why)
    if facts.qemu_version >= (8, 1, 0):
        return Expected(
            name,
            frozenset({Unplug.DELETED}),
            f"QEMU {'.'.join(map(str, facts.qemu_version))}: virtio-mem unplug "
            "is allowed once size is 0 (QEMU 8.1)",
        )
    return Expected(
        name,
        frozenset({Unplug.REJECTED}),
        f'QEMU {".".join(map(str, facts.qemu_version))}: "virtio based memory '
        'devices cannot be unplugged" before QEMU 8.1',
    )


# -- what the kernel can do at all -------------------------------------------------------------


# What each scenario family needs of the kernel beyond memory hotplug itself: feature ->
# (options, what they are for). ``needs_kernel(feature)`` skips, naming the option, before
# booting a kernel whose config lacks one.
KERNEL_FEATURES: dict[str, tuple[tuple[str, ...], str]] = {
    "memory-hotremove": (("MEMORY_HOTREMOVE",), "offlining and removing memory blocks"),
    "memmap-on-memory": (
        ("MHP_MEMMAP_ON_MEMORY",),
        "a hot-added block's memmap on the block itself",
    ),
    "virtio-mem": (("VIRTIO_MEM",), "the virtio-mem driver"),
    "nvdimm": ((), "NVDIMM regions and pmem namespaces (the arch's LIBNVDIMM parts, BLK_DEV_PMEM)"),
    "devdax": (
        ("ZONE_DEVICE", "DEV_DAX", "DEV_DAX_PMEM"),
        "devdax namespaces: ZONE_DEVICE memory behind /dev/daxX.Y",
    ),
    "kmem": (("DEV_DAX_KMEM",), "dax kmem: devdax memory onlined as System RAM"),
}


def kernel_options(feature: str, arch: Arch) -> tuple[tuple[str, ...], str]:
    """The options ``feature`` needs on ``arch``, and what for."""
    if feature not in KERNEL_FEATURES:
        raise UsageError(f"unknown kernel feature {feature!r}: one of {', '.join(KERNEL_FEATURES)}")
    options, purpose = KERNEL_FEATURES[feature]
    if feature == "nvdimm":
        options = (*arch.nvdimm_kconfig, "BLK_DEV_PMEM")
    return options, purpose


def kernel_supports(feature: str, config: KernelConfig, arch: Arch) -> Expected[bool]:
    """Whether a kernel (by its config, before booting it) can take part in a scenario."""
    options, purpose = kernel_options(feature, arch)
    if not config.options:
        return Expected(feature, True, "no config to check: assume yes")
    missing = [o for o in options if not config.enabled(o)]
    if missing:
        return Expected(
            feature,
            False,
            f"{'; '.join(config.line(o) for o in missing)} "
            f"({purpose} needs {' '.join(f'CONFIG_{o}' for o in options)})",
        )
    return Expected(feature, True, " ".join(f"CONFIG_{o}" for o in options) + " enabled")


# -- the auto-movable online policy ------------------------------------------------------------
# "mm/memory_hotplug: add "auto-movable" online policy" (v5.15, the series "mm/memory_hotplug:
# "auto-movable" online policy and memory groups"): MMOP_ONLINE goes to ZONE_MOVABLE while
# all Movable memory stays within auto_movable_ratio percent of the boot-time kernel memory
# (auto_movable_can_online_movable); a static memory group (an ACPI DIMM) is decided as a
# whole, memory without a group (pseries DLPAR) per block, and a dynamic group (virtio-mem)
# per block with its own kernel-zone blocks adding to the allowance.

AUTO_MOVABLE_RATIO = 301  # the module parameter's default (mm/memory_hotplug.c)


def auto_movable_zones(
    kernel_early: int, units: list[int], *, ratio: int = AUTO_MOVABLE_RATIO, dynamic: bool = False
) -> Expected[tuple[str, ...]]:
    """The zone of each unit (pages) onlined in order with ``online`` under auto-movable, on
    one node: DIMMs (static groups) or blocks (no group), or with ``dynamic`` the blocks of
    one virtio-mem device. ``kernel_early``: present pages of the kernel zones at boot."""
    movable = own_kernel = 0
    zones = []
    for pages in units:
        allowance = ratio * (kernel_early + (own_kernel if dynamic else 0)) // 100
        if kernel_early > 0 and movable + pages <= allowance:
            movable += pages
            zones.append("Movable")
        else:
            own_kernel += pages
            zones.append("Normal")
    kind = "one dynamic group, per block" if dynamic else "per unit"
    return Expected(
        "auto_movable_zones",
        tuple(zones),
        f"auto-movable, ratio {ratio}, {kernel_early} kernel pages at boot, {kind}: "
        "Movable while Movable + the unit <= ratio x kernel / 100 "
        "(auto_movable_can_online_movable)",
    )


def fresh_valid_zones(facts: KernelFacts) -> Expected[tuple[str, ...] | None]:
    """valid_zones of an offline block that intersects no zone (a fresh DIMM's), or None
    where the answer is dynamic. valid_zones_show() prints the zone plain `online` would
    pick, then the other of kernel zone and Movable (drivers/base/memory.c); contig-zones
    picks the kernel zone for a block no zone spans, Movable with movable_node
    (default_zone_for_pfn)."""
    name = "valid_zones"
    policy = facts.param("memory_hotplug.online_policy") or "contig-zones"
    if policy != "contig-zones":
        return Expected(
            name,
            None,
            f"online_policy={policy}: the first zone depends on "
            "the memory online now (auto_movable_zone_for_pfn)",
        )
    if "movable_node" in facts.cmdline:
        return Expected(
            name, ("Movable", "Normal"), "movable_node: Movable first (default_zone_for_pfn)"
        )
    return Expected(
        name,
        ("Normal", "Movable"),
        "contig-zones: a block no zone spans "
        "goes to the kernel zone by default (default_zone_for_pfn), Movable "
        "is the alternative (valid_zones_show)",
    )


def zone_device_raises_max_pfn(facts: KernelFacts) -> Expected[bool]:
    """Whether adding ZONE_DEVICE memory (devdax) makes its pfns readable in /proc/kpageflags
    by raising max_pfn. x86 add_pages() skips update_end_of_memory_vars() for pgmap memory
    since "x86/mm/init: Handle the special case of device private pages in add_pages(), to
    not increase max_pfn" (v6.15; stable 6.1.141 and 6.12.31); powerpc always raises it."""
    name = "zone_device_raises_max_pfn"
    if facts.arch != "x86_64":
        return Expected(name, True, "powerpc add_pages() always calls update_end_of_memory_vars()")
    v = facts.version
    fixed = (
        v >= (6, 15, 0)
        or (v[:2] == (6, 12) and v >= (6, 12, 31))
        or (v[:2] == (6, 1) and v >= (6, 1, 141))
    )
    return Expected(
        name,
        not fixed,
        "x86 add_pages() with a pgmap leaves max_pfn alone (v6.15, 6.12.31, 6.1.141)"
        if fixed
        else "before v6.15 (6.12.31, 6.1.141) x86 add_pages() raises max_pfn for ZONE_DEVICE too",
    )
