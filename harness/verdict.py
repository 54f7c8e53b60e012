"""The one verdict authority: what a scenario's outcome means, and what a run exits with.

Every place that shows a verdict (the terminal, the result records, JUnit, KCIDB, HTML, the
exit status of ``memhp`` and of pytest, bisect and series verify) asks ``classify`` and
``exit_status`` here, so that the same exception can never be a kernel FAIL in one report
and an infrastructure ERROR in another.

* FAIL   the kernel: a failed check (AssertionError, ``pytest.fail``) or a ``KernelFailure``
         (a panic, a lockup, an acknowledgement a live guest never gave);
* ERROR  not the kernel, while the scenario ran: infrastructure (QEMU, SSH, a guest tool),
         memhp's own bugs (any other exception: KeyError, TypeError, ...), bad input found
         mid-run, a transport timeout no caller judged;
* MISS   not the kernel, and it never ran: infrastructure before it (image, archive, boot),
         or a run that was interrupted before reaching it;
* SKIP   not applicable here (the arch, QEMU or kernel lacks what it needs, named);
* PASS   something was checked and held.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import pytest

from harness.errors import (
    EXIT_INFRA,
    EXIT_KERNEL,
    EXIT_USAGE,
    InfrastructureError,
    KernelFailure,
)


class Status(enum.Enum):
    FAIL = "FAIL"
    ERROR = "ERROR"
    MISS = "MISS"
    PASS = "PASS"
    SKIP = "SKIP"

    @property
    def infrastructure(self) -> bool:
        """No verdict on the kernel: the harness, QEMU or the archive failed."""
        return self in (Status.ERROR, Status.MISS)


PRIORITY = [Status.FAIL, Status.ERROR, Status.MISS, Status.PASS, Status.SKIP]  # KCIDB's order


def worst(statuses: Iterable[Status]) -> Status | None:
    """The summary status of several runs (KCIDB: the highest priority one)."""
    seen = set(statuses)
    return next((s for s in PRIORITY if s in seen), None)


def classify(exc: BaseException | None, when: str, skipped: bool = False) -> Status:
    """The status of one test phase (pytest's setup, call, teardown) from what it raised."""
    if skipped:
        return Status.SKIP
    if exc is None:
        return Status.PASS
    if isinstance(exc, (AssertionError, KernelFailure, pytest.fail.Exception)):
        return Status.FAIL
    if isinstance(exc, InfrastructureError) and when == "setup":
        return Status.MISS  # it never ran: the image, the archive, the boot
    return Status.ERROR  # infrastructure mid-run, or memhp's own bug: never the kernel's


def is_harness_bug(exc: BaseException | None) -> bool:
    """An exception memhp did not classify itself (a KeyError, a TypeError, ...): its
    traceback is what a maintainer of memhp needs."""
    from harness.errors import MemhpError

    return exc is not None and not isinstance(
        exc, (AssertionError, MemhpError, pytest.fail.Exception, pytest.skip.Exception)
    )


def exit_status(statuses: Iterable[Status], *, interrupted: bool = False) -> int:
    """memhp's exit status for a run (README, "Verdicts and exit status"): 1 when the kernel
    failed anywhere (a fact an interruption does not undo), else 2 when the run was
    interrupted, else 3 when something else went wrong, else 0."""
    seen = set(statuses)
    if Status.FAIL in seen:
        return EXIT_KERNEL
    if interrupted:
        return EXIT_USAGE
    if seen & {Status.ERROR, Status.MISS}:
        return EXIT_INFRA
    return 0
