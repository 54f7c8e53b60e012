"""What the guest kernel's log says when something went wrong: one table for the console
watch (harness.qemu.console: a panic ends every wait, a lockup explains a silent guest) and
for the dmesg check after each scenario (harness.hotplug.dmesg: any splat fails it)."""

from __future__ import annotations

import re

# The first line of the kernel's own panic report: the VM is going down.
PANIC = re.compile(
    r"Kernel panic - not syncing|kernel BUG at|BUG: kernel NULL pointer dereference|"
    r"BUG: unable to handle|Oops: "
)
# What a hung guest kernel prints while it still can: a guest that stops answering and
# shows one of these is the kernel's failure, not a lost VM.
LOCKUP = re.compile(
    r"soft lockup|hard LOCKUP|rcu: INFO: \S+ (?:self-)?detected stall|"
    r"blocked for more than \d+ seconds"
)

# Every line a kernel developer treats as "the kernel complained", with the name reports
# show. Specific kinds first: "BUG: Bad page state" is reported as "bad page", not "bug".
SPLATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx))
    for name, rx in (
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
