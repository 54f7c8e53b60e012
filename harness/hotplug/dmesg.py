"""Kernel log watch: a scenario fails if the guest logged a splat during it.

Tests that provoke one on purpose declare it with ``@pytest.mark.dmesg_allow(regex, ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# What a kernel developer treats as "the kernel complained", with the name shown in reports.
BAD_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx))
    for name, rx in (
        # Specific kinds first: "BUG: Bad page state" is reported as "bad page", not "bug".
        ("bad page", r"Bad page (?:state|map)"),
        ("soft lockup", r"soft lockup"),
        ("sanitizer", r"\b(?:UBSAN|KASAN|KFENCE|KMSAN):"),
        ("warning", r"\bWARNING: (?:CPU|at)\b"),
        ("bug", r"\bBUG: |kernel BUG at"),
        ("oops", r"\bOops\b"),
        ("panic", r"Kernel panic"),
        ("hard lockup", r"hard LOCKUP"),
        ("rcu stall", r"rcu.*(?:detected stalls|self-detected stall)"),
        ("hung task", r"blocked for more than \d+ seconds"),
        ("gpf", r"general protection fault"),
        ("bad access", r"Unable to handle kernel|unable to handle page fault"),
        ("list corruption", r"list_(?:add|del) corruption"),
        ("refcount", r"refcount_t: "),
        ("page dump", r"page dumped because"),
    )
)


@dataclass(frozen=True)
class Splat:
    kind: str
    line: str


def find_splats(lines: Iterable[str], allow: Iterable[str] = ()) -> list[Splat]:
    """Lines that match a bad pattern and no allowed regex."""
    allowed = [re.compile(a) for a in allow]
    found = []
    for line in lines:
        for kind, pattern in BAD_PATTERNS:
            if pattern.search(line) and not any(a.search(line) for a in allowed):
                found.append(Splat(kind, line))
                break
    return found


def format_splats(splats: list[Splat], context: list[str], limit: int = 40) -> str:
    """The failure text: each splat named, then the log lines of the test (clipped)."""
    head = [f"guest kernel logged {len(splats)} problem line(s) during the test:"]
    head += [f"  [{s.kind}] {s.line}" for s in splats[:10]]
    if len(context) > limit:
        context = [*context[:limit], f"... {len(context) - limit} more lines"]
    return "\n".join(head + ["dmesg during the test:"] + [f"  {c}" for c in context])
