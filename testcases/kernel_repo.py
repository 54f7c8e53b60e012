"""A real kernel git repository with a known mm regression, for the series/bisect tests.

Built once into memhp's cache from Debian's linux-source-6.12 tree: the tree as the base
commit, then five commits on top. Exactly one is a regression memhp must find, a one-line
change to online_pages_range() that strides a whole MAX_PAGE_ORDER chunk per step. Aligned
ranges do not notice; with memmap_on_memory a block's first chunk is only a pageblock
(its memmap fills the start), so every other pageblock is never handed to the buddy and
stays PageOffline after onlining. Only the memmap_on_memory scenario catches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import cache
from harness.workflows.gittree import output as git

GOOD_TAG = "memhp-base"
BAD_TAG = "memhp-top"
REGRESSION_SUBJECT = "mm/memory_hotplug: step online_pages_range() by MAX_ORDER_NR_PAGES"
SCENARIO = "test_memmap_on_memory_dimm and one_block and not force"  # the one that catches it


@dataclass(frozen=True)
class Change:
    path: str
    old: str
    new: str
    subject: str
    body: str


CHANGES = (
    Change(
        "Documentation/admin-guide/mm/memory-hotplug.rst",
        "All memory blocks have the same size.\n",
        "All memory blocks have the same size; see\n/sys/devices/system/memory/block_size_bytes.\n",
        "docs: mm: memory-hotplug: point at block_size_bytes",
        "Say where the block size can be read.",
    ),
    Change(
        "mm/memory_hotplug.c",
        "bool mhp_supports_memmap_on_memory(void)\n{",
        "/* Whether a hot-added block can host its own memmap. */\n"
        "bool mhp_supports_memmap_on_memory(void)\n{",
        "mm/memory_hotplug: document mhp_supports_memmap_on_memory()",
        "A one-line comment; no functional change.",
    ),
    Change(
        "mm/memory_hotplug.c",
        "\t\tpfn += (1UL << order);\n",
        "\t\tpfn += MAX_ORDER_NR_PAGES;\n",
        REGRESSION_SUBJECT,
        "Each chunk is at most MAX_PAGE_ORDER: step by that.",
    ),
    Change(
        "mm/page_alloc.c",
        "\t * Pages freed from memblock might be marked as reserved.\n",
        "\t * Pages freed from memblock might be marked as reserved; memblock\n"
        "\t * clears that itself before freeing them.\n",
        "mm/page_alloc: clarify the reserved pages comment in __free_pages_core()",
        "No functional change.",
    ),
    Change(
        "Documentation/admin-guide/mm/memory-hotplug.rst",
        "granularity that can be hot(un)plugged.",
        "granularity that can be hot(un)plugged (e.g. one DIMM slot's worth).",
        "docs: mm: memory-hotplug: an example of the hotplug granularity",
        "No functional change.",
    ),
)


def regression_repo(tree: Path) -> Path:
    """The repository (cached): base = ``tree``, tags memhp-base and memhp-top. An older
    layout of the commits on top is rewritten in place (memhp's worktree of it stays)."""
    repo = cache.path("trees", "linux-6.12-regression.git")
    if not ((repo / ".git").is_dir() and _has_tag(repo, GOOD_TAG)):
        shutil.rmtree(repo, ignore_errors=True)
        # Hard links: copying 1.7 GB costs a minute; git replaces files, never edits them.
        subprocess.run(["cp", "-al", str(tree), str(repo)], check=True)
        git(repo, "init", "-q")
        git(repo, "add", "-A", "-f", ".")
        git(repo, "commit", "-q", "-m", f"Linux {_version(repo)} (Debian linux-source)")
        git(repo, "tag", GOOD_TAG)
    if _has_tag(repo, BAD_TAG) and git(
        repo, "log", "--format=%s", f"{GOOD_TAG}..{BAD_TAG}"
    ).splitlines() == [c.subject for c in CHANGES[::-1]]:
        return repo
    git(repo, "reset", "-q", "--hard", GOOD_TAG)
    for change in CHANGES:
        path = repo / change.path
        text = path.read_text()
        assert text.count(change.old) == 1, f"{change.path}: {change.old!r} not unique"
        path.unlink()  # break the hard link: the source tree stays pristine
        path.write_text(text.replace(change.old, change.new))
        git(repo, "commit", "-q", "-a", "-m", f"{change.subject}\n\n{change.body}")
    git(repo, "tag", "-f", BAD_TAG)
    return repo


def _has_tag(repo: Path, tag: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "-q", "--verify", tag], capture_output=True
        ).returncode
        == 0
    )


def _version(tree: Path) -> str:
    head = dict(line.split(" = ", 1) for line in (tree / "Makefile").read_text().splitlines()[1:4])
    return f"{head['VERSION']}.{head['PATCHLEVEL']}.{head['SUBLEVEL']}"


if __name__ == "__main__":  # warm the cache: python -m testcases.kernel_repo TREE
    import sys

    print(
        regression_repo(
            Path(
                sys.argv[1]
                if len(sys.argv) > 1
                else os.path.expanduser("~/.cache/memhp/trees/linux-source-6.12")
            )
        )
    )
