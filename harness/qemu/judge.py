"""Whose fault a VM that stopped serving is, decided once for every way of noticing it (a
QMP wait, an SSH command, the boot): a panic or lockup on the console is the kernel's
failure, anything else the infrastructure's, with QEMU's state and the console tail. The
caller lets QEMU and the console reader finish first: a panic report may race the loss
(syzkaller re-reads the console for the same reason)."""

from __future__ import annotations

from harness.errors import GuestPanic, InfrastructureError, KernelFailure, MemhpError
from harness.qemu.console import ConsoleLog


def judge(
    console: ConsoleLog | None,
    cause: str,
    *,
    kind: type[InfrastructureError],
    qemu_state: str,
    cmdline: str,
) -> MemhpError:
    """The error for a VM lost because of ``cause``; ``qemu_state`` as /proc tells it."""
    if console is None:
        return kind(cause, cmdline=cmdline)
    if panic := console.panic():
        return GuestPanic(f"guest kernel panicked: {panic.splitlines()[0]}", console_tail=panic)
    if lockup := console.lockup():
        return KernelFailure(
            f"guest kernel locked up: {lockup.splitlines()[0]}", console_tail=lockup
        )
    return kind(f"{cause} (QEMU {qemu_state})", console_tail=console.tail(), cmdline=cmdline)
