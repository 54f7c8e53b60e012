"""Known kernel bugs: failures a scenario earns on a kernel line that lacks the fix, reported
as what they are (XFAIL: a FAIL of the kernel, known, with its cause and fix cited) instead of
failing every night. A bug is matched by what the scenario saw (its failure text), on the
kernel lines it is known on, in the scenarios known to show it; strict: a listed scenario
that passes where the bug is known says the table is stale (an ERROR, memhp's to fix)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.hotplug.expectations import Commit


@dataclass(frozen=True)
class KnownBug:
    name: str
    cause: Commit
    fix: str  # the fix as cited where it was posted (no release holds it yet, or one does)
    since: tuple[int, int, int]  # first affected version (the cause's release)
    until: tuple[int, int, int] | None  # first version with the fix; None: none yet
    scenarios: tuple[str, ...]  # scenario functions that show it (strict for these)
    seen: str  # a regex the failure text matches when it is this bug
    arches: tuple[str, ...] = ()  # the arches that have it; empty: every arch

    def affects(self, version: tuple[int, int, int], arch: str) -> bool:
        on_arch = not self.arches or arch in self.arches
        return on_arch and self.since <= version and (self.until is None or version < self.until)

    def describe(self) -> str:
        return f"known kernel bug: {self.name}, since {self.cause}; fix: {self.fix}"


KNOWN: tuple[KnownBug, ...] = (
    KnownBug(
        "hot-remove frees one page of each 512-page vmemmap block (x86)",
        Commit("bf9e4e30f353", "x86/mm: Use pagetable_free()", "v6.18"),
        '"x86/mm: fix vmemmap leak on memory hot-remove" (linux-mm, 2026-05-19, Cc stable)',
        (6, 18, 0),
        (6, 19, 0),  # Debian's 6.18 line ended before the fix; 6.19+ unchecked: not listed
        ("test_cycles_dimm_plug_online_offline_unplug", "test_cycles_virtio_mem_grow_and_shrink"),
        r"MemFree fell by \d+ MiB",
    ),
    KnownBug(
        "a memoryless node that gains ZONE_NORMAL memory never joins N_NORMAL_MEMORY",
        Commit(
            "8d2882a8edb8",
            "mm,memory_hotplug: remove status_change_nid_normal and update documentation",
            "v6.17",
        ),
        '"mm/memory_hotplug: maintain N_NORMAL_MEMORY during hotplug" (linux-mm, 2026-03-30, '
        "Cc stable; in Debian's 7.2)",
        (6, 17, 0),
        (6, 19, 0),  # the 6.17 and 6.18 lines, as Debian builds them; 7.2 has the fix
        ("test_dimm_remove_refused_while_it_holds_a_later_memmap",),
        r"has_normal_memory: expected present",
    ),
    KnownBug(
        "a memmap_on_memory block can never go offline, so its DIMM never goes away (arm64): "
        "MEM_GOING_OFFLINE's range starts after the block's own vmemmap pages, inside the "
        'PMD leaf that maps them, and the new check refuses it ("splits a leaf entry in '
        'vmemmap", EPERM)',
        Commit(
            "95a58852b0e5",
            "arm64/mm: Reject memory removal that splits a kernel leaf mapping",
            "v7.1",
        ),
        "none posted that memhp knows of (found by memhp on Debian's 7.2.12 cloud-arm64 and "
        "linux-source-7.3)",
        (7, 1, 0),
        None,
        (
            "test_memmap_on_memory_dimm",
            "test_dimm_remove_while_online_memmap_on_memory",
        ),
        r"offline refused: .*EPERM|unplug refused: ACPI_DEVICE_OST .*'status': 130",
        ("arm64",),
    ),
)


def known_bug(
    scenario: str, version: tuple[int, int, int], failure: str, arch: str
) -> KnownBug | None:
    """The known bug a failure of ``scenario`` is, on this kernel version and arch; None: a
    failure to report (the same text in a scenario not listed is not excused)."""
    for bug in KNOWN:
        listed = scenario in bug.scenarios
        if listed and bug.affects(version, arch) and re.search(bug.seen, failure):
            return bug
    return None


def expected_bug(scenario: str, version: tuple[int, int, int], arch: str) -> KnownBug | None:
    """The known bug ``scenario`` must show on this kernel and arch (strict), if any."""
    return next((b for b in KNOWN if b.affects(version, arch) and scenario in b.scenarios), None)
