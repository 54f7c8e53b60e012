"""How the harness tells a slow VM from a gone one, the same in every wait (a QMP event, the
console, an SSH command): every HEARTBEAT of silence it asks whether QEMU still answers QMP,
and before giving up whether the guest still answers SSH. A VM that does not is lost at
once; one that does had its whole bound, and what it did not do is judged by the caller."""

from __future__ import annotations

HEARTBEAT = 5.0  # seconds of silence before a wait asks whether the VM lives
QMP_TIMEOUT = 10.0  # QEMU answers QMP in milliseconds; silence this long means trouble
