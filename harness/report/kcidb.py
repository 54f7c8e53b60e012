"""Reports from one results directory: KCIDB v5.3 JSON and a readable HTML page.

(JUnit comes from pytest itself, ``--junitxml``; the plugin adds kernel/arch/QEMU as suite
properties.) KCIDB statuses keep the kernel's verdicts apart from ours: FAIL is the kernel,
ERROR/MISS the harness or infrastructure, SKIP not applicable (harness.verdict decides which).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.results import Checkout, Result, RunRecord
from harness.verdict import Status

ORIGIN = "memhp"
KCIDB_VERSION = {"major": 5, "minor": 3}
LOG_EXCERPT_MAX = 16384  # KCIDB's maxLength


@dataclass(frozen=True)
class BuildOutcome:
    """A kernel build the orchestrator attempted (series verify): PASS or FAIL and why."""

    arch: str
    kernel: str
    status: Status
    log_excerpt: str = ""
    duration: float = 0.0


def _id(*parts: str) -> str:
    return f"{ORIGIN}:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def _excerpt(text: str) -> str:
    return text if len(text) <= LOG_EXCERPT_MAX else "...\n" + text[-(LOG_EXCERPT_MAX - 4) :]


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def kcidb_path(result: Result) -> str:
    """KCIDB's dot-separated test path: memhp.<file>.<scenario>."""
    module = result.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    parts = [module.removeprefix("test_"), result.scenario.removeprefix("test_")]
    return ".".join(
        [ORIGIN, *("".join(c if c.isalnum() or c in "_-" else "-" for c in p) for p in parts)]
    )


def kcidb(
    results: Sequence[Result],
    checkout: Checkout | None = None,
    builds: Sequence[BuildOutcome] = (),
    run_id: str | None = None,
    runs: Sequence[RunRecord] = (),
) -> dict[str, Any]:
    """The KCIDB v5.3 document: checkouts, builds, one test per scenario run (a scenario an
    interruption kept from running is a MISS test); each build's misc says whether the run
    that tested it was complete (KCIDB has no object for a run)."""
    run = run_id or uuid.uuid4().hex[:12]
    checkouts: dict[str, dict[str, Any]] = {}
    build_docs: dict[tuple[str, str], dict[str, Any]] = {}

    def checkout_id(kernel: str, release: str) -> str:
        if checkout is not None:
            cid = _id(run, "checkout", checkout.commit, checkout.patchset_hash)
            checkouts.setdefault(cid, _checkout_doc(cid, checkout, run))
            return cid
        cid = _id(run, "checkout", kernel)
        checkouts.setdefault(
            cid,
            {
                "id": cid,
                "origin": ORIGIN,
                "valid": True,
                "tree_name": kernel.split(":", 1)[0],
                "comment": f"kernel {kernel}" + (f" ({release})" if release else ""),
            },
        )
        return cid

    def build_id(arch: str, kernel: str, release: str) -> str:
        key = (arch, kernel)
        if key not in build_docs:
            bid = _id(run, "build", arch, kernel)
            build_docs[key] = {
                "id": bid,
                "origin": ORIGIN,
                "checkout_id": checkout_id(kernel, release),
                "architecture": arch,
                "config_name": _config_name(kernel),
                "status": Status.PASS.value,
                "comment": f"{kernel}" + (f" ({release})" if release else ""),
                "misc": {"memhp_runs": [r.describe() for r in runs]},
            }
        return str(build_docs[key]["id"])

    for b in builds:
        build_id(b.arch, b.kernel, "")
        doc = build_docs[(b.arch, b.kernel)]
        doc["status"] = b.status.value
        doc["duration"] = round(b.duration, 1)
        if b.log_excerpt:
            doc["log_excerpt"] = _excerpt(b.log_excerpt)
    tests = [_test_doc(r, build_id(r.arch, r.kernel, r.release), run) for r in results]
    return {
        "version": KCIDB_VERSION,
        "checkouts": list(checkouts.values()),
        "builds": list(build_docs.values()),
        "tests": tests,
    }


def _checkout_doc(cid: str, c: Checkout, run: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": cid,
        "origin": ORIGIN,
        "valid": True,
        "patchset_hash": c.patchset_hash,
    }
    if c.tree:
        doc["tree_name"] = c.tree
    if c.commit:
        doc["git_commit_hash"] = c.commit
    if c.describe:
        doc["git_commit_name"] = c.describe
    if c.message_id:
        doc["message_id"] = c.message_id.strip("<>")
    if c.patches:
        doc["comment"] = f"{len(c.patches)} patch(es): " + "; ".join(c.patches)[:900]
    doc["misc"] = {"run": run}
    return doc


def _config_name(kernel: str) -> str:
    return "kconfigs: hotplug + guest + arch" if kernel.startswith("build:") else "distribution"


def _test_doc(r: Result, build_id: str, run: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": _id(run, "test", r.nodeid),
        "origin": ORIGIN,
        "build_id": build_id,
        "path": kcidb_path(r),
        "status": r.status.value,
        "start_time": _rfc3339(r.start_time),
        "duration": round(r.duration, 3),
        "environment": {
            "comment": f"QEMU {r.qemu or '?'} ({r.qemu_spec}, {r.accel or '?'})",
            "misc": {
                "kernel_release": r.release,
                "qemu": r.qemu_spec,
                "qemu_version": r.qemu,
                "qemu_build": r.qemu_build,
                "accel": r.accel,
            },
        },
        "misc": {
            "nodeid": r.nodeid,
            "phase": r.phase,
            "message": r.message,
            "page_flag_maps": [m.png for m in r.maps],
            "infrastructure": r.status.infrastructure,
            "known_issue": r.known,
            "measurements": r.measurements,
        },
    }
    if r.repeats:
        doc["misc"]["repeats"] = {
            "statuses": r.repeats,
            "summary": r.repeat_summary(),
            "flaky": r.flaky,
        }
    if r.log_excerpt:
        doc["log_excerpt"] = _excerpt(r.log_excerpt)
    if r.message:
        doc["comment"] = r.message[:500]
    return doc


# -- HTML ----------------------------------------------------------------------------------
