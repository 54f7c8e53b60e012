"""The TCG artifact the boot retry may name, from a console captured on this host
(bench/boot_failures.py: Debian 7.2, thread=multi, 1 boot in 400), and the TCG threading."""

from __future__ import annotations

import pytest

from harness.arch import PPC64LE, X86_64
from harness.errors import GuestPanic, VMLost
from harness.qemu.accel import Accel, tcg_artifact

STALE_INT3 = """\
sched_clock: Marking stable (2280214147, -33985903)->(2428545782, -182317538)
Oops: int3: 0000 [#1] SMP NOPTI
CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 7.2.12+deb13-amd64 #1 PREEMPT(lazy)
Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 0.1 11/11/2019
RIP: 0010:sched_clock_cpu+0x9/0x1f0
Code: ff ff 66 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 40 00 90 90 90 90 90 90 90 90 90 90 90 90 \
90 90 90 90 f3 0f 1e fa 41 54 55 53 66 <90> e8 c1 d9 ed ff 48 03 05 da 86 13 02 48 89 c2 5b
RSP: 0018:ffffc90000003fc0 EFLAGS: 00000006
Kernel panic - not syncing: Fatal exception in interrupt
""".replace("\\\n", "")


def test_an_int3_on_a_byte_without_one_is_the_tcg_artifact() -> None:
    assert tcg_artifact(GuestPanic("panic", console_tail=STALE_INT3))


def test_an_int3_the_memory_still_holds_is_the_kernels() -> None:
    real = STALE_INT3.replace("53 66 <90>", "53 cc <90>")
    assert tcg_artifact(GuestPanic("panic", console_tail=real)) is None


@pytest.mark.parametrize(
    "console",
    [
        "",
        "Kernel panic - not syncing: No working init found",
        "Oops: general protection fault\nCode: 00 <cc>",
    ],
)
def test_anything_else_is_not_an_artifact(console: str) -> None:
    assert tcg_artifact(VMLost("lost", console_tail=console)) is None


def test_tcg_runs_a_guests_vcpus_in_one_thread_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MEMHP_TCG_THREAD", raising=False)
    assert "tcg,thread=single" in Accel("tcg", "test").qemu_args(X86_64)
    assert "tcg,thread=multi" in Accel("tcg", "test").qemu_args(PPC64LE)
    monkeypatch.setenv("MEMHP_TCG_THREAD", "multi")
    assert "tcg,thread=multi" in Accel("tcg", "test").qemu_args(X86_64)
