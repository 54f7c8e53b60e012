"""One result model for every report (KCIDB, HTML, series and bisect verdicts).

The pytest plugin writes one ``Result`` per scenario run into a results directory (each xdist
worker writes its own files); the reports read them back. The status names are KCIDB's:

* FAIL  the kernel is at fault (a check failed, the guest panicked, dmesg splat);
* ERROR the scenario did not complete for a reason that is not the kernel's (harness or
  infrastructure: QEMU died, the VM was lost, SSH never came);
* MISS  the scenario never ran because the infrastructure failed first (e.g. boot);
* SKIP  not applicable here (the arch or kernel lacks what it needs);
* PASS.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InfrastructureError, KernelFailure


class Status(enum.Enum):
    FAIL = "FAIL"
    ERROR = "ERROR"
    MISS = "MISS"
    PASS = "PASS"
    SKIP = "SKIP"

    @property
    def infrastructure(self) -> bool:
        return self in (Status.ERROR, Status.MISS)


PRIORITY = [Status.FAIL, Status.ERROR, Status.MISS, Status.PASS, Status.SKIP]  # KCIDB's order


def worst(statuses: Iterable[Status]) -> Status | None:
    """The summary status of several runs (KCIDB: the highest priority one)."""
    seen = set(statuses)
    return next((s for s in PRIORITY if s in seen), None)


def classify(exc: BaseException | None, when: str, skipped: bool) -> Status:
    """The status of one pytest phase from what it raised."""
    if skipped:
        return Status.SKIP
    if exc is None:
        return Status.PASS
    if isinstance(exc, InfrastructureError):
        return Status.MISS if when == "setup" else Status.ERROR
    if isinstance(exc, (AssertionError, KernelFailure)):
        return Status.FAIL
    return Status.ERROR  # a harness bug or bad input: not the kernel's verdict


@dataclass(frozen=True)
class StepMap:
    """A page-flag picture: its file (relative to the results dir) and each step's blocks."""

    png: str
    steps: list[dict[str, Any]]  # {"step": str, "blocks": [{"index", "state", "zone", "pages"}]}


@dataclass
class Result:
    nodeid: str
    scenario: str  # function name plus non-target parameters, e.g. test_dimm_online_kernel
    arch: str
    kernel: str  # the spec, e.g. debian:6.12 or build:/path
    status: Status
    phase: str  # the pytest phase that decided the status
    start_time: float
    duration: float
    release: str = ""  # uname -r, when the guest booted
    qemu: str = ""
    accel: str = ""
    message: str = ""  # one line: why it did not pass
    log_excerpt: str = ""  # failing dmesg lines, or the console tail for infrastructure
    maps: list[StepMap] = field(default_factory=list)

    @property
    def slug(self) -> str:
        """A file-name-safe, unique name for this run."""
        digest = hashlib.sha256(self.nodeid.encode()).hexdigest()[:8]
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.scenario)[:80] + "-" + digest

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        d = dict(d, status=Status(d["status"]), maps=[StepMap(**m) for m in d.get("maps", [])])
        return cls(**d)


RECORDS = "records"


def save(result: Result, results_dir: Path) -> Path:
    path = results_dir / RECORDS / f"{result.slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1))
    tmp.replace(path)  # readers never see half a record
    return path


def load(results_dir: Path) -> list[Result]:
    """Every result in a results directory, in a stable order."""
    files = sorted((results_dir / RECORDS).glob("*.json"))
    out = [Result.from_json(json.loads(f.read_text())) for f in files]
    return sorted(out, key=lambda r: (r.arch, r.kernel, r.nodeid))


@dataclass(frozen=True)
class Checkout:
    """Where the tested kernel came from, for KCIDB's checkout and the report header."""

    tree: str = ""  # a name: "debian", the tree's directory name, ...
    commit: str = ""  # git commit hash tested (the top of the series)
    describe: str = ""
    patchset_hash: str = ""
    message_id: str = ""
    patches: tuple[str, ...] = ()  # subjects, in order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CHECKOUT = "checkout.json"


def save_checkout(checkout: Checkout, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / CHECKOUT).write_text(json.dumps(checkout.to_json(), indent=1))


def load_checkout(results_dir: Path) -> Checkout | None:
    path = results_dir / CHECKOUT
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return Checkout(**dict(d, patches=tuple(d.get("patches", ()))))
