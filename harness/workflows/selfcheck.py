"""What the suite catches, measured: a corpus of one-line regressions in the hotplug code of a
kernel tree, each built and run through the scenarios, each caught by named scenarios or
reported as a gap.

The tree is copied once (hard links, like the series/bisect repository) so that the user's
tree stays untouched; a mutant replaces one file's link with the changed text and is undone
the same way, and the one build directory rebuilds only what changed. The unmutated kernel
must pass first: a mutant is caught only against a clean baseline.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import cache, kbuild
from harness.arch import Arch
from harness.errors import BuildError, UsageError
from harness.progress import progress
from harness.verdict import Status
from harness.workflows.runner import run_scenarios

# The scenario files a mutant is run through (the quick ones; cycles, load and the kernel's
# selftest add minutes and catch nothing these do not).
FILES = (
    "test_dimm.py",
    "test_memmap_on_memory.py",
    "test_virtio_mem.py",
    "test_nvdimm.py",
    "test_numa.py",
    "test_online_policy.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # in the tree
    old: str  # unique in the file; context lines allowed, one line changes
    new: str
    effect: str  # what it breaks, as a kernel developer would see it


# Linux 6.12 (Debian linux-source-6.12). Each changes one line.
CORPUS = (
    Mutant(
        "present-off-by-one",
        "mm/memory_hotplug.c",
        "\tadjust_present_page_count(pfn_to_page(pfn), group, nr_pages);",
        "\tadjust_present_page_count(pfn_to_page(pfn), group, nr_pages - 1);",
        "online_pages() counts one page too few in the zone's present pages",
    ),
    Mutant(
        "online-stride",
        "mm/memory_hotplug.c",
        "\t\tpfn += (1UL << order);",
        "\t\tpfn += MAX_ORDER_NR_PAGES;",
        "online_pages_range() skips the rest of an unaligned first chunk",
    ),
    Mutant(
        "movable-is-kernel",
        "mm/memory_hotplug.c",
        "\tif (online_type == MMOP_ONLINE_MOVABLE)\n"
        "\t\treturn &NODE_DATA(nid)->node_zones[ZONE_MOVABLE];",
        "\tif (online_type == MMOP_ONLINE_MOVABLE)\n"
        "\t\treturn default_kernel_zone_for_pfn(nid, start_pfn, nr_pages);",
        "online_movable onlines to the kernel zone",
    ),
    Mutant(
        "no-shrink-span",
        "mm/memory_hotplug.c",
        "\tshrink_zone_span(zone, start_pfn, start_pfn + nr_pages);",
        "\t/* shrink_zone_span(zone, start_pfn, start_pfn + nr_pages); */",
        "offlined memory stays in the zone's span",
    ),
    Mutant(
        "no-node-state",
        "mm/memory_hotplug.c",
        "\tnode_states_set_node(nid, &arg);",
        "\t/* node_states_set_node(nid, &arg); */",
        "a node gaining memory is not marked N_MEMORY",
    ),
    Mutant(
        "auto-movable-ratio",
        "mm/memory_hotplug.c",
        "\treturn movable_pages <= (auto_movable_ratio * kernel_early_pages) / 100;",
        "\treturn movable_pages <= (auto_movable_ratio * kernel_early_pages) / 1000;",
        "auto-movable allows a tenth of the Movable memory it should",
    ),
    Mutant(
        "offline-keeps-managed",
        "mm/memory_hotplug.c",
        "\tadjust_managed_page_count(pfn_to_page(start_pfn), -managed_pages);",
        "\t/* adjust_managed_page_count(pfn_to_page(start_pfn), -managed_pages); */",
        "offlined pages stay in managed pages and MemTotal",
    ),
    Mutant(
        "memmap-on-memory-off",
        "mm/memory_hotplug.c",
        "\tif (!mhp_memmap_on_memory())\n\t\treturn false;\n\n\t/*\n\t * Make sure the vmemmap",
        "\tif (mhp_memmap_on_memory())\n\t\treturn false;\n\n\t/*\n\t * Make sure the vmemmap",
        "memory_hotplug.memmap_on_memory=1 never puts the memmap on the block",
    ),
    Mutant(
        "memmap-init-reserved",
        "mm/mm_init.c",
        "\t\t\t\t__SetPageOffline(page);",
        "\t\t\t\t__SetPageReserved(page);",
        "hot-added memmap initialised PageReserved again (before v6.11's PageOffline)",
    ),
    Mutant(
        "managed-doubled",
        "mm/page_alloc.c",
        "\tatomic_long_add(count, &page_zone(page)->managed_pages);",
        "\tatomic_long_add(2 * count, &page_zone(page)->managed_pages);",
        "adjust_managed_page_count() counts every page twice in the zone",
    ),
    Mutant(
        # Debian's 6.12 keeps the hotplug half of mm/sparse.c for !SPARSEMEM_VMEMMAP only,
        # which no arch here builds: the live copy is in mm/sparse-vmemmap.c.
        "section-not-online",
        "mm/sparse-vmemmap.c",
        "\t\tms->section_mem_map |= SECTION_IS_ONLINE;",
        "\t\t/* ms->section_mem_map |= SECTION_IS_ONLINE; */",
        "online memory's sections are not marked online (pfn_to_online_page fails)",
    ),
    Mutant(
        "memmap-pages-kept",
        "mm/sparse-vmemmap.c",
        "\tmemmap_pages_add(-section_nr_vmemmap_pages(pfn, nr_pages, altmap, pgmap));",
        "\t/* memmap_pages_add(-section_nr_vmemmap_pages(pfn, nr_pages, altmap, pgmap)); */",
        "a removed section's memmap stays in nr_memmap_pages (depopulate_section_memmap)",
    ),
    Mutant(
        "zone-device-max-pfn",
        "mm/memremap.c",
        "\t\t.pgmap = pgmap,",
        "\t\t/* .pgmap = pgmap, */",
        "ZONE_DEVICE memory is added like RAM (x86 raises max_pfn for it)",
    ),
    Mutant(
        "phys-index",
        "drivers/base/memory.c",
        '\treturn sysfs_emit(buf, "%08lx\\n", memory_block_id(mem->start_section_nr));',
        '\treturn sysfs_emit(buf, "%08lx\\n", memory_block_id(mem->start_section_nr) + 1);',
        "memoryN/phys_index is one block off",
    ),
    Mutant(
        "online-movable-name",
        "drivers/base/memory.c",
        '\t[MMOP_ONLINE_MOVABLE] = "online_movable",',
        '\t[MMOP_ONLINE_MOVABLE] = "online_moveable",',
        "writing online_movable to a block's state is refused",
    ),
    Mutant(
        "valid-zones-no-movable",
        "drivers/base/memory.c",
        "\t\t\t\t  MMOP_ONLINE_MOVABLE, default_zone);",
        "\t\t\t\t  MMOP_ONLINE_KERNEL, default_zone);",
        "valid_zones of an offline block no longer offers Movable",
    ),
    Mutant(
        "fake-offline-not-dirty",
        "drivers/virtio/virtio_mem.c",
        "\t\t\tSetPageDirty(page);",
        "\t\t\tClearPageDirty(page);",
        "virtio-mem's never-onlined unplugged pages lose PG_dirty",
    ),
    Mutant(
        "kmem-resource-name",
        "drivers/dax/kmem.c",
        'kmem_name = kstrdup_const("System RAM (kmem)", GFP_KERNEL);',
        'kmem_name = kstrdup_const("System RAM", GFP_KERNEL);',
        'dax kmem memory shows as plain "System RAM" in /proc/iomem',
    ),
)


@dataclass
class Outcome:
    mutant: Mutant
    built: bool
    caught_by: list[str] = field(default_factory=list)  # scenarios that FAILED
    problems: list[str] = field(default_factory=list)  # ERROR/MISS: no verdict
    # False when the mutated file's object came out byte for byte as before: the line is
    # not compiled in this config, so no scenario could catch it. A corpus error, not a miss.
    compiled: bool = True

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)

    def row(self) -> str:
        if not (self.built and self.compiled):
            why = "not compiled in (object unchanged)" if self.built else "did not build"
            return f"| {self.mutant.name} | {self.mutant.path} | {why} | - |"
        caught = ", ".join(sorted(set(self.caught_by))) or "**MISSED**"
        infra = f" ({len(self.problems)} without a verdict)" if self.problems else ""
        return (
            f"| {self.mutant.name} | {self.mutant.path} | {self.mutant.effect} | {caught}{infra} |"
        )


@dataclass
class SelfCheck:
    baseline_failures: list[str]
    outcomes: list[Outcome]
    every_catcher: bool = False  # else each mutant's run stopped at its first catch

    @property
    def live(self) -> list[Outcome]:
        """The mutants that built and changed their file's object: the rate's denominator."""
        return [o for o in self.outcomes if o.built and o.compiled]

    @property
    def rate(self) -> float:
        live = self.live
        return sum(o.caught for o in live) / len(live) if live else 0.0

    @property
    def corpus_errors(self) -> list[str]:
        """Mutants that did not build or are not compiled in: the corpus, not the suite."""
        return [o.mutant.name for o in self.outcomes if not (o.built and o.compiled)]

    def table(self) -> str:
        by = "caught by" if self.every_catcher else "caught by (the run stops at a catch)"
        head = f"| mutant | file | what it breaks | {by} |\n|---|---|---|---|"
        lines = [head, *(o.row() for o in self.outcomes)]
        live = self.live
        lines.append(
            f"\ncatch rate: {sum(o.caught for o in live)}/{len(live)} "
            f"({100 * self.rate:.0f} %); unmutated kernel: "
            + (
                "0 failures"
                if not self.baseline_failures
                else f"{len(self.baseline_failures)} failures ({', '.join(self.baseline_failures)})"
            )
        )
        return "\n".join(lines)


def run(
    tree: Path,
    arch: Arch,
    out: Path,
    *,
    only: str | None = None,
    files: tuple[str, ...] = FILES,
    every_catcher: bool = False,
    qemu: str | None = None,
    workers: int = 1,
) -> SelfCheck:
    """The baseline, then every mutant (or those whose name contains ``only``). A mutant's
    run stops at its first catch unless ``every_catcher``: the rate needs one, and the
    nightly's time is that of the mutants that are caught late."""
    work = worktree(tree)
    build_dir = build_dir_of(arch)
    corpus = [m for m in CORPUS if only is None or only in m.name]
    if not corpus:
        raise UsageError(
            f"no mutant named like {only!r}: one of {', '.join(m.name for m in CORPUS)}"
        )
    for m in corpus:
        if (work / m.path).read_text() != (tree / m.path).read_text():
            _rewrite(work / m.path, (tree / m.path).read_text())  # an interrupted run's
        _check_applies(work, m)
    kbuild.build(work, arch, base="tinyconfig", out=build_dir)
    unmutated = {m.path: _object_digest(build_dir, m.path) for m in corpus}
    base = run_scenarios(
        f"build:{build_dir}",
        arch.name,
        out / "baseline",
        files=files,
        workers=workers,
        qemu=qemu,
    )
    failing = [
        r.scenario
        for r in base.results
        if r.status is not Status.PASS and r.status is not Status.SKIP
    ]
    outcomes = []
    for m in corpus:
        with progress(f"selfcheck: {m.name} ({m.path})"):
            outcome = _one(
                work,
                build_dir,
                arch,
                m,
                out / m.name,
                files,
                every_catcher,
                unmutated[m.path],
                qemu,
                workers,
            )
            outcomes.append(outcome)
    return SelfCheck(failing, outcomes, every_catcher)


def _one(
    work: Path,
    build_dir: Path,
    arch: Arch,
    m: Mutant,
    out: Path,
    files: tuple[str, ...],
    every_catcher: bool,
    unmutated: str | None,
    qemu: str | None,
    workers: int,
) -> Outcome:
    path = work / m.path
    original = path.read_text()
    _rewrite(path, original.replace(m.old, m.new))
    try:
        try:
            kbuild.build(work, arch, base="tinyconfig", out=build_dir)
        except BuildError:
            return Outcome(m, built=False)
        if _object_digest(build_dir, m.path) == unmutated:
            return Outcome(m, built=True, compiled=False)
        run = run_scenarios(
            f"build:{build_dir}",
            arch.name,
            out,
            files=files,
            workers=workers,
            maxfail=0 if every_catcher else 1,
            qemu=qemu,
        )
    finally:
        _rewrite(path, original)
    return Outcome(
        m,
        built=True,
        caught_by=[r.scenario for r in run.results if r.status is Status.FAIL],
        problems=[r.scenario for r in run.results if r.status.infrastructure],
    )


def _object_digest(build_dir: Path, source: str) -> str | None:
    """SHA256 of the object built from ``source``: the same bytes after a mutation mean the
    line is not compiled in this config (an #ifdef'd-out copy). Mutants keep the line count,
    so __LINE__ in WARN_ON() and friends does not change the object by itself."""
    obj = build_dir / Path(source).with_suffix(".o")
    return hashlib.sha256(obj.read_bytes()).hexdigest() if obj.is_file() else None


def _check_applies(work: Path, m: Mutant) -> None:
    text = (work / m.path).read_text()
    if text.count(m.old) != 1:
        raise UsageError(
            f"mutant {m.name}: {m.path} has {text.count(m.old)} copies of its "
            "line, not 1: is the tree linux 6.12?"
        )


def _rewrite(path: Path, text: str) -> None:
    """Replace the file's hard link with new text: the source tree it links to stays."""
    path.unlink()
    path.write_text(text)


def build_dir_of(arch: Arch) -> Path:
    """Where the self-check builds (the baseline, then each mutant in turn)."""
    return cache.path("selfcheck", f"build-{arch.name}")


def worktree(tree: Path) -> Path:
    """A hard-linked copy of ``tree`` in memhp's cache (made once)."""
    work = cache.path("selfcheck", f"{tree.resolve().name}-tree")
    if not (work / "Makefile").is_file():
        shutil.rmtree(work, ignore_errors=True)
        work.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(tree.resolve()), str(work)], check=True)
    return work
