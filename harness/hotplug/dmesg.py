"""Kernel log watch: a scenario fails if the guest logged a splat during it.

Tests that provoke one on purpose declare it with ``@pytest.mark.dmesg_allow(regex, ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from harness.guest.kernel_log import SPLATS


@dataclass(frozen=True)
class Splat:
    kind: str
    line: str


def find_splats(lines: Iterable[str], allow: Iterable[str] = ()) -> list[Splat]:
    """Lines that match a bad pattern and no allowed regex."""
    allowed = [re.compile(a) for a in allow]
    found = []
    for line in lines:
        for kind, pattern in SPLATS:
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
