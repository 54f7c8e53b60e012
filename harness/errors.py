"""Error classes.

Three families, because the person reading a red result needs to know whose fault it is
(harness.verdict turns them into FAIL / ERROR / MISS and exit statuses):

* ``UsageError``: bad input (a spec that does not resolve, a missing binary, a kernel of the
  wrong arch). Found before any guest boots; the message says what to do; exit status 2.
* ``InfrastructureError``: the harness lost its VM, QEMU would not start, SSH never came up,
  the archive would not give a package, an image is damaged. Never a verdict on the kernel
  under test: MISS before a scenario ran, ERROR while it ran.
* ``KernelFailure``: the guest kernel itself misbehaved: it panicked, refused a command a
  scenario needs, or never answered a device while it was otherwise alive. FAIL, like a
  failed check (test assertions stay plain ``AssertionError``).
"""

from __future__ import annotations

# Exit statuses, one per kind of fault (README: "Exit status"). 0: everything passed.
EXIT_KERNEL = 1  # a scenario failed: the kernel
EXIT_USAGE = 2  # bad input, found before any guest booted (also pytest's "interrupted")
EXIT_INFRA = 3  # only the infrastructure failed (QEMU, archive, image, harness): no verdict


class MemhpError(Exception):
    """Base class: ``str(err)`` is a one-line message that says what happened."""


class UsageError(MemhpError):
    """Bad input from the user; fix the input and run again."""


class InfrastructureError(MemhpError):
    """The harness or QEMU failed; the kernel under test is not to blame."""

    def __init__(self, message: str, *, console_tail: str = "", cmdline: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail
        self.cmdline = cmdline

    def details(self) -> str:
        """Multi-line context for reports: the command line and the console tail."""
        parts = []
        if self.cmdline:
            parts.append(f"QEMU command line:\n  {self.cmdline}")
        if self.console_tail:
            parts.append("console tail:\n" + _indent(self.console_tail))
        return "\n".join(parts)


class LaunchError(InfrastructureError):
    """QEMU exited or refused to start."""


class VMLost(InfrastructureError):
    """QEMU died or the guest stopped answering while a test was using it."""


class BootTimeout(InfrastructureError):
    """The guest did not become ready within the bounded time."""


class SSHError(InfrastructureError):
    """SSH to the guest failed (connection, host key or authentication)."""


class ArchiveError(InfrastructureError):
    """The Debian archive did not give a package (no index, 404, checksum mismatch)."""


class ImageError(InfrastructureError):
    """A guest image is damaged or could not be built from its parts."""


class QMPCommandError(InfrastructureError):
    """QEMU rejected a QMP command; carries QEMU's own message. Scenarios that expect a
    refusal catch it; an unexpected one is the harness's problem, not the kernel's."""

    def __init__(self, command: str, args: object, desc: str) -> None:
        super().__init__(f"QMP {command} failed: {desc}")
        self.command = command
        self.arguments = args
        self.desc = desc


class HarnessError(InfrastructureError):
    """memhp itself went wrong (a child pytest that crashed, an internal inconsistency)."""


class WaitTimeout(MemhpError):
    """Neutral: something a wait expected did not happen in time (a QMP event). The layer
    that knows what was due decides whose fault that is (harness.hotplug.devices: a live
    guest that never acknowledged a device is the kernel's); unjudged, it is an ERROR."""


class BuildError(MemhpError):
    """Neutral: a kernel tree did not configure or build (its first error quoted). In
    ``kernel build`` and series verify that is the tree's failure; in a bisect step a commit
    that cannot be tested (skip)."""


class ConditionNotMet(MemhpError):
    """A scenario could not set up the condition it tests (the pinned page, the load, the
    memmap's placement): it says nothing of the kernel, so it is an ERROR, not a FAIL."""


class KernelFailure(MemhpError):
    """The guest kernel failed: panicked, or misbehaved while otherwise alive."""

    def __init__(self, message: str, *, console_tail: str = "") -> None:
        super().__init__(message)
        self.console_tail = console_tail


class GuestPanic(KernelFailure):
    """The guest kernel panicked or oopsed (the console shows the report)."""


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
