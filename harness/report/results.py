"""One result model for every report (KCIDB, HTML, JUnit, series and bisect verdicts).

The pytest plugin writes one ``Result`` per scenario run into a results directory (each xdist
worker writes its own files), and one ``RunRecord`` for the run as a whole (how many were
selected, how many ran, whether a signal cut it short); the reports read them back. What a
status means is decided in one place, ``harness.verdict``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.verdict import Status


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
    qemu: str = ""  # its version, "10.0.13"
    accel: str = ""
    qemu_spec: str = "host"  # the QEMU axis, as given: host, debian:10.0, a path
    qemu_build: str = ""  # which build and why: the package, or the binary's path
    known: str = ""  # a FAIL that is a known kernel bug: which, its cause and fix
    message: str = ""  # one line: why it did not pass
    log_excerpt: str = ""  # failing dmesg lines, or the console tail for infrastructure
    maps: list[StepMap] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)  # the scenario's own numbers
    repeats: list[str] = field(default_factory=list)  # statuses of its reruns (--memhp-repeat)
    repro: str = ""  # a failure's standalone script, relative to the results dir (repro/)

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAIL, Status.ERROR)

    @property
    def flaky(self) -> bool:
        """It failed, and passed again on a fresh guest at least once."""
        return self.failed and Status.PASS.value in self.repeats

    def repeat_summary(self) -> str:
        return repeat_summary(self.repeats) if self.repeats else ""

    @property
    def target(self) -> tuple[str, str, str]:
        """(arch, kernel spec, QEMU spec): what a report's columns are."""
        return (self.arch, self.kernel, self.qemu_spec)

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


def repeat_summary(repeats: list[str]) -> str:
    """A failed run and its reruns' statuses: "failed 2 of 3 runs (flaky)", "failed 3 of 3
    runs (every time)". Reruns that reached no verdict (SKIP, MISS) are not counted."""
    verdicts = [s for s in repeats if s in ("PASS", "FAIL", "ERROR")]
    runs = 1 + len(verdicts)
    failed = 1 + sum(s != "PASS" for s in verdicts)
    return f"failed {failed} of {runs} runs ({'every time' if failed == runs else 'flaky'})"


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
    return sorted(out, key=lambda r: (r.arch, r.kernel, r.qemu_spec, r.nodeid))


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


RUN = "run.json"


@dataclass(frozen=True)
class RunRecord:
    """One run as a whole: a report that lists only what finished must say what did not."""

    selected: int  # tests pytest selected
    ran: int  # of those, how many reached a verdict (the rest never ran, or never finished)
    interrupted_by: str | None = None  # the signal that cut the run short (SIGTERM, SIGINT)
    stopped: str | None = None  # pytest stopped early as asked (--maxfail, -x)
    label: str = ""  # which run, when several are merged (a shard's directory)

    @property
    def never_ran(self) -> int:
        return self.selected - self.ran

    @property
    def complete(self) -> bool:
        return self.interrupted_by is None and self.stopped is None and not self.never_ran

    def describe(self) -> str:
        """One line: 'INTERRUPTED by SIGTERM: 142 of 265 selected reached a verdict, 123 did
        not'."""
        where = f"{self.label}: " if self.label else ""
        counts = (
            f"{self.ran} of {self.selected} selected reached a verdict, {self.never_ran} did not"
        )
        if self.interrupted_by:
            return f"{where}INTERRUPTED by {self.interrupted_by}: {counts}"
        if self.stopped:
            return f"{where}stopped early as asked ({self.stopped}): {counts}"
        return f"{where}complete: {self.ran} of {self.selected} selected reached a verdict"


def save_runs(runs: list[RunRecord], results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / RUN).write_text(json.dumps([asdict(r) for r in runs], indent=1))


def load_runs(results_dir: Path) -> list[RunRecord]:
    """The run records of a results directory (several after a merge; none from memhp
    before they existed)."""
    path = results_dir / RUN
    if not path.is_file():
        return []
    return [RunRecord(**d) for d in json.loads(path.read_text())]
