"""What the guest init (guest-images/init) prints on the console, through /dev/kmsg, for
the harness to wait on."""

from __future__ import annotations

READY_MARKER = "MEMHP-READY"  # init: modules loaded, everything up


SSHD_MARKER = "memhp: sshd started"  # init: SSH can start (modules still loading)


SSHD_FAILED_MARKER = "memhp: sshd failed"  # init: dropbear did not start
