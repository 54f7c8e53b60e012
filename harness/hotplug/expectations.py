"""What a scenario expects, derived from facts about the kernel and QEMU under test.

One place, keyed by facts read from the guest, its image and QEMU (never by a test's own
if-ladder). What the kernel reports about itself is read, not looked up by version: its
config, its memmap_on_memory mode (the module parameter), sizeof(struct page) and the section
size (its VMCOREINFO). Where only a version can tell (a behaviour under test changed), the
rule cites the change in one form, ``commit 0123456789ab ("subject") (in vX.Y)`` (``Commit``),
and its boundary comes from that citation. Every answer carries ``why``, which failure
messages print, and any rule can be overridden from the command line (``--memhp-expect
NAME=VALUE``) by a developer whose patched kernel is meant to behave differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from harness.arch import Arch
from harness.errors import InfrastructureError, UsageError
from harness.guest.kpageflags import KPF
from harness.hotplug.checks import FlagRule, at_least, every_page_is, no_page
from harness.hotplug.records import Unplug
from harness.kconfig import KernelConfig

T = TypeVar("T", covariant=True)  # an Expected[str] is an Expected[object]


@dataclass(frozen=True)
class Commit:
    """A kernel (or QEMU) change a rule depends on, cited as drgn's vmtest cites them."""

    hash: str  # 12 hex digits
    subject: str
    release: str  # the first release holding it: "v6.11", "QEMU v8.1.0"

    def __str__(self) -> str:
        return f'commit {self.hash} ("{self.subject}") (in {self.release})'

    @property
    def version(self) -> tuple[int, int, int]:
        return parse_release(self.release.rsplit("v", 1)[-1])


# The kernel and QEMU changes the rules below depend on (checked against the upstream
# trees; see README "Expectations").
DEFAULT_ONLINE_BOOL = Commit(
    "8604d9e534a3", "memory_hotplug: introduce CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE", "v4.7"
)
DEFAULT_ONLINE_TYPE = Commit(
    "44d46b76c3a4", "mm: add build-time option for hotplug memory default online type", "v6.14"
)
MEMMAP_ON_MEMORY = Commit(
    "a08a2ae34613", "mm,memory_hotplug: allocate memmap from the added memory range", "v5.13"
)
MEMMAP_FORCE = Commit(
    "2d1f649c7c08",
    "mm/memory_hotplug: support memmap_on_memory when memmap is not aligned to pageblocks",
    "v6.6",
)
MEMMAP_PER_BLOCK = Commit(
    "6b8f0798b85a", "mm/memory_hotplug: split memmap_on_memory requests across memblocks", "v6.8"
)
MEMMAP_PAGE_OFFLINE = Commit(
    "503b158fc30f",
    "mm/memory_hotplug: initialize memmap of !ZONE_DEVICE with PageOffline() instead of "
    "PageReserved()",
    "v6.11",
)
KPAGEFLAGS_ZERO = Commit(
    "a40b3fa844b4", "fs/proc/page: refactor to reduce code duplication", "v6.16"
)
AUTO_MOVABLE = Commit(
    "e83a437faa62", 'mm/memory_hotplug: introduce "auto-movable" online policy', "v5.15"
)
FREE_TO_TAIL = Commit(
    "7fef431be9c9", "mm/page_alloc: place pages to tail in __free_pages_core()", "v5.10"
)
QEMU_VIRTIO_MEM_UNPLUG = Commit(
    "339a8bbdfed9", "virtio-mem-pci: Device unplug support", "QEMU v8.1.0"
)

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
    # /sys/module/memory_hotplug/parameters/memmap_on_memory as the kernel reads it (Y, N,
    # force); None: the kernel has no such parameter (no CONFIG_MHP_MEMMAP_ON_MEMORY)
    memmap_on_memory_param: str | None = None
    struct_page_size: int | None = None  # VMCOREINFO SIZE(page); None: not reported
    section_bits: int | None = None  # VMCOREINFO NUMBER(SECTION_SIZE_BITS)

    @property
    def struct_page(self) -> int:
        """sizeof(struct page), as the kernel's VMCOREINFO says.

        :raises InfrastructureError: the kernel does not say (no /proc/kcore).
        """
        if self.struct_page_size is None:
            raise InfrastructureError(
                f"{self.release} does not report sizeof(struct page): /proc/kcore has no "
                "VMCOREINFO note (build it with CONFIG_PROC_KCORE, as kconfigs/guest.config does)"
            )
        return self.struct_page_size

    @property
    def section_size(self) -> int:
        """Bytes per memory section (1 << SECTION_SIZE_BITS), as VMCOREINFO says.

        :raises InfrastructureError: the kernel does not say (no /proc/kcore).
        """
        if self.section_bits is None:
            raise InfrastructureError(
                f"{self.release} does not report its section size: /proc/kcore has no "
                "VMCOREINFO note (build it with CONFIG_PROC_KCORE, as kconfigs/guest.config does)"
            )
        return 1 << self.section_bits

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

# The CONFIG_MHP_DEFAULT_ONLINE_TYPE_* choice (DEFAULT_ONLINE_TYPE; Debian builds it from
# 6.12.111-1, stable 6.12.110 backported it). Before it, the bool of DEFAULT_ONLINE_BOOL
# chose between offline and online. The config says which one a kernel has.
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
            return Expected(name, policy, f"{facts.config.line(option)} ({DEFAULT_ONLINE_TYPE})")
    option = "MEMORY_HOTPLUG_DEFAULT_ONLINE"
    if not facts.config.options:
        raise InfrastructureError(
            f"no kernel config for {facts.release}: cannot tell its default online policy "
            "(give the kernel's config, or --memhp-expect online_policy=...)"
        )
    policy = "online" if facts.config.get(option) == "y" else "offline"
    return Expected(
        name,
        policy,
        f"{facts.config.line(option)} ({DEFAULT_ONLINE_BOOL}; no MHP_DEFAULT_ONLINE_TYPE "
        "choice in this kernel)",
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
    if facts.version >= KPAGEFLAGS_ZERO.version:
        # kpage_read() writes 0 when pfn_to_online_page() is NULL and never passes NULL to
        # stable_page_flags(): NOPAGE is gone, such pfns look like pages with no flags.
        return Expected(
            name, 0, f"pfn_to_online_page() is NULL and kpage_read() reports 0 ({KPAGEFLAGS_ZERO})"
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
    # clears PG_reserved (before MEMMAP_PAGE_OFFLINE, v6.11) or PageOffline (since). A few
    # dozen pages are allocated at once, so BUDDY is a majority, not all.
    return Expected(
        name,
        (no_page(KPF.NOPAGE, KPF.RESERVED, KPF.OFFLINE), at_least(KPF.BUDDY, 0.8)),
        "onlined pages are freed to the buddy allocator (generic_online_page)",
    )


# -- removal -------------------------------------------------------------------------------


def memmap_on_memory(facts: KernelFacts) -> Expected[bool]:
    """Whether this kernel can put a hot-added block's memmap on the block itself: it has
    the memmap_on_memory parameter exactly when CONFIG_MHP_MEMMAP_ON_MEMORY is set."""
    name = "memmap_on_memory_supported"
    if facts.memmap_on_memory_param is None:
        return Expected(
            name,
            False,
            f"no memory_hotplug.memmap_on_memory parameter: "
            f"{facts.config.line('MHP_MEMMAP_ON_MEMORY')} ({MEMMAP_ON_MEMORY})",
        )
    return Expected(name, True, f"CONFIG_MHP_MEMMAP_ON_MEMORY=y ({MEMMAP_ON_MEMORY})")


def memmap_on_memory_mode(facts: KernelFacts) -> Expected[str | None]:
    """The memmap_on_memory mode the kernel took: "on", "force" or None (off), as its
    parameter reads. The kernel decides what a command line's value means: a 6.1 kernel
    reads "force" as N (a bool parameter before MEMMAP_FORCE)."""
    name = "memmap_on_memory_mode"
    param = facts.memmap_on_memory_param
    asked = facts.param("memory_hotplug.memmap_on_memory")
    said = f"memory_hotplug.memmap_on_memory reads {param}" + (
        f" (the command line asked for {asked})" if asked is not None else ""
    )
    if param == "force":
        return Expected(name, "force", f"{said} ({MEMMAP_FORCE})")
    if param == "Y":
        return Expected(name, "on", said)
    return Expected(name, None, said if param is not None else memmap_on_memory(facts).why)


def dimm_unplug(facts: KernelFacts) -> Expected[Unplug]:
    """device_del of a DIMM whose blocks are online and hold nothing the kernel cannot move
    (Movable, a self-hosted memmap, or a Normal block whose memmap went elsewhere): the guest
    offlines and removes them."""
    name = "dimm_unplug"
    if not facts.firmware_onlines_dimms:
        return Expected(name, Unplug.DELETED, "ACPI eject offlines the blocks, then removes them")
    return Expected(
        name,
        Unplug.DELETED,
        "DLPAR removal offlines each LMB, then removes it (dlpar_memory_remove_by_ic); "
        f"onlined memory is used last ({FREE_TO_TAIL}), so nothing pins it meanwhile",
    )


def dimm_unplug_holding_memmap(facts: KernelFacts) -> Expected[Unplug]:
    """device_del of a DIMM whose Normal block holds the memmap of memory added after it on
    the same node (vmemmap_populate allocates on the node, alloc_pages_node): offlining it
    fails (has_unmovable_pages), so the removal is refused, each arch in its own way."""
    name = "dimm_unplug_holding_memmap"
    if not facts.firmware_onlines_dimms:
        return Expected(
            name,
            Unplug.REFUSED,
            "ACPI eject: the offline fails, acpi_scan reports it with a failing _OST "
            "(0x80-0x83) and QEMU keeps the DIMM",
        )
    return Expected(
        name,
        Unplug.NO_EVENT,
        "DLPAR: the first LMB's offline fails, so nothing was removed and nothing is rolled "
        "back (dlpar_memory_remove_by_ic): the hypervisor is never told, QEMU sends no event",
    )


# -- memmap_on_memory ----------------------------------------------------------------------


def memmap_init(facts: KernelFacts) -> Expected[str]:
    """How hot-added memmap is initialised before onlining: 'reserved' or 'offline'.

    Visible only on pages onlining never frees, such as memmap_on_memory vmemmap pages.
    """
    name = "memmap_init"
    if (o := _override(facts, name)) is not None:
        return o
    if facts.version >= MEMMAP_PAGE_OFFLINE.version:
        return Expected(name, "offline", str(MEMMAP_PAGE_OFFLINE))
    return Expected(
        name,
        "reserved",
        f"hot-added memmap is initialised PG_reserved (memmap_init_range, MEMINIT_HOTPLUG) "
        f"before {MEMMAP_PAGE_OFFLINE}",
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
    if facts.version < MEMMAP_PER_BLOCK.version and device_blocks != 1:
        return Expected(
            name,
            none,
            "only a device of exactly one memory block gets its memmap on itself "
            f"(mhp_supports_memmap_on_memory(size)) before {MEMMAP_PER_BLOCK}",
        )
    pages = block_size // page_size * facts.struct_page // page_size
    if pages * page_size % pageblock:
        # The vmemmap must fill whole pageblocks; "force" pads it (MEMMAP_FORCE).
        if mode.value != "force":
            return Expected(
                name,
                none,
                f"a block's memmap ({pages} pages of {facts.struct_page}-byte struct pages) "
                f"does not fill whole {pageblock >> 10} KiB pageblocks; only "
                f"memmap_on_memory=force pads it ({MEMMAP_FORCE})",
            )
        per_block = pageblock // page_size
        pages = -(-pages // per_block) * per_block
    init = memmap_init(facts)
    value = 1 << KPF.OWNER_PRIVATE
    if init.value == "reserved":
        value |= 1 << KPF.RESERVED
    since = f"per memory block since {MEMMAP_PER_BLOCK}" if device_blocks != 1 else "one block"
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
    qemu = ".".join(map(str, facts.qemu_version))
    if facts.qemu_version >= QEMU_VIRTIO_MEM_UNPLUG.version:
        return Expected(
            name,
            frozenset({Unplug.DELETED}),
            f"QEMU {qemu}: virtio-mem unplug is allowed once size is 0 ({QEMU_VIRTIO_MEM_UNPLUG})",
        )
    return Expected(
        name,
        frozenset({Unplug.REJECTED}),
        f'QEMU {qemu}: "virtio based memory devices cannot be unplugged" before '
        f"{QEMU_VIRTIO_MEM_UNPLUG}",
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
    "dimm": ((), "hot-plugged DIMMs (the arch's path: ACPI PNP0C80 devices, pseries DLPAR)"),
    "nvdimm": ((), "NVDIMM regions and pmem namespaces (the arch's LIBNVDIMM parts, BLK_DEV_PMEM)"),
    "devdax": (
        ("ZONE_DEVICE", "DEV_DAX", "DEV_DAX_PMEM"),
        "devdax namespaces: ZONE_DEVICE memory behind /dev/daxX.Y",
    ),
    "kmem": (("DEV_DAX_KMEM",), "dax kmem: devdax memory onlined as System RAM"),
    "suspend": (("SUSPEND",), "suspend to RAM (S3)"),
    "cxl": (
        ("CXL_BUS", "CXL_ACPI", "CXL_PCI", "CXL_MEM", "CXL_REGION", "DEV_DAX_CXL", "DEV_DAX_KMEM"),
        "CXL volatile memory: RAM regions on type-3 devices, as System RAM through kmem",
    ),
}


def kernel_options(feature: str, arch: Arch) -> tuple[tuple[str, ...], str]:
    """The options ``feature`` needs on ``arch``, and what for."""
    if feature not in KERNEL_FEATURES:
        raise UsageError(f"unknown kernel feature {feature!r}: one of {', '.join(KERNEL_FEATURES)}")
    options, purpose = KERNEL_FEATURES[feature]
    if feature == "nvdimm":
        options = (*arch.nvdimm_kconfig, "BLK_DEV_PMEM")
    if feature == "dimm":
        options = arch.dimm_kconfig
    return options, purpose


def kernel_supports(feature: str, config: KernelConfig, arch: Arch) -> Expected[bool]:
    """Whether a kernel (by its config, before booting it) can take part in a scenario."""
    options, purpose = kernel_options(feature, arch)
    if not config.options:
        raise InfrastructureError(
            f"no kernel config to check {feature} against ({config.source}): a missing fact "
            "is not a yes"
        )
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
# AUTO_MOVABLE (the series "mm/memory_hotplug: "auto-movable" online policy and memory
# groups"): MMOP_ONLINE goes to ZONE_MOVABLE while
# all Movable memory stays within auto_movable_ratio percent of the boot-time kernel memory
# (auto_movable_can_online_movable); a static memory group (an ACPI DIMM) is decided as a
# whole, memory without a group (pseries DLPAR) per block, and a dynamic group (virtio-mem)
# per block with its own kernel-zone blocks adding to the allowance.

AUTO_MOVABLE_RATIO = 301  # the module parameter's default (mm/memory_hotplug.c)


def auto_movable_zones(
    kernel_early: int,
    units: list[int],
    *,
    ratio: int = AUTO_MOVABLE_RATIO,
    dynamic: bool = False,
    cma: int = 0,
) -> Expected[tuple[str, ...]]:
    """The zone of each unit (pages) onlined in order with ``online`` under auto-movable, on
    one node: DIMMs (static groups) or blocks (no group), or with ``dynamic`` the blocks of
    one virtio-mem device. ``kernel_early``: present pages of the kernel zones at boot;
    ``cma``: the CMA pages among them, which the policy counts as Movable, not kernel
    (auto_movable_stats_account_zone)."""
    kernel_early -= cma
    movable, own_kernel = cma, 0
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
        f"auto-movable, ratio {ratio}, {kernel_early} kernel pages at boot "
        f"({cma} CMA pages counted Movable), {kind}: "
        "Movable while Movable + the unit <= ratio x kernel / 100 "
        f"(auto_movable_can_online_movable, {AUTO_MOVABLE})",
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
