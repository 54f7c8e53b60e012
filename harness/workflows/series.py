"""Verify a patch series as posted: apply it in memhp's worktree, build, boot, run, per patch.

The mbox is what ``git format-patch`` or b4 produce: an optional cover letter ([PATCH 0/N]),
then the patches; ``base-commit:`` (format-patch --base, b4) says where it applies.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from pathlib import Path

from harness import kbuild, report
from harness.arch import get_arch
from harness.errors import BuildError, UsageError
from harness.progress import progress
from harness.qemu import builds
from harness.report.kcidb import BuildOutcome
from harness.report.results import Checkout, save_checkout
from harness.verdict import Status
from harness.workflows.gittree import GitError, Worktree
from harness.workflows.runner import Run, run_scenarios

NUMBER = re.compile(r"\[[^\]]*?\b(\d+)/(\d+)\s*\]")
PREFIX = re.compile(r"^\s*(\[[^\]]*\]\s*)+")
BASE_COMMIT = re.compile(r"^base-commit:\s*([0-9a-f]{7,40})\s*$", re.M)


@dataclass(frozen=True)
class Mail:
    subject: str  # as sent, with its [PATCH n/m] prefix
    message_id: str
    raw: bytes  # the message as format-patch wrote it (what git am gets and KCIDB hashes)
    number: int | None  # n of [PATCH n/m]

    @property
    def title(self) -> str:
        """The subject without its [PATCH ...] prefix: the commit's subject."""
        return PREFIX.sub("", self.subject).strip()

    @property
    def is_patch(self) -> bool:
        return b"\ndiff --git " in self.raw or b"\n--- a/" in self.raw


@dataclass(frozen=True)
class Series:
    patches: tuple[Mail, ...]
    cover: Mail | None
    base_commit: str | None

    @property
    def message_id(self) -> str:
        first = self.cover or self.patches[0]
        return first.message_id

    @property
    def patchset_hash(self) -> str:
        """KCIDB's: sha256 over the newline-terminated sha256 of each patch, in order."""
        lines = "".join(hashlib.sha256(p.raw).hexdigest() + "\n" for p in self.patches)
        return hashlib.sha256(lines.encode()).hexdigest()


def parse_mbox(path: Path) -> Series:
    if not path.is_file():
        raise UsageError(f"mbox {path} does not exist")
    box = mailbox.mbox(str(path), create=False)
    mails = []
    for key in box.iterkeys():
        msg = box.get_message(key)
        subject = str(make_header(decode_header(msg.get("Subject", "")))).replace("\n", " ")
        m = NUMBER.search(subject)
        mails.append(
            Mail(
                re.sub(r"\s+", " ", subject),
                str(msg.get("Message-ID", "")).strip(),
                # mailbox drops the blank line that ends each mbox message
                box.get_bytes(key, from_=True) + b"\n",
                int(m.group(1)) if m else None,
            )
        )
    patches = [m for m in mails if m.is_patch and m.number != 0]
    if not patches:
        raise UsageError(f"{path}: no patches found (expected git format-patch or b4 output)")
    if all(p.number is not None for p in patches):
        patches.sort(key=lambda p: p.number or 0)
    cover = next((m for m in mails if m.number == 0 or not m.is_patch), None)
    bases = [b for m in mails for b in BASE_COMMIT.findall(m.raw.decode(errors="replace"))]
    return Series(tuple(patches), cover, bases[-1] if bases else None)


@dataclass
class PatchRow:
    """What happened to one patch: applied / built / booted / tested (per arch)."""

    number: int
    title: str
    applied: bool | None = None  # None: not attempted
    commit: str = ""
    apply_error: str = ""
    built: dict[str, bool] = field(default_factory=dict)  # arch -> built
    build_error: dict[str, str] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)  # arch -> the scenario run

    def status(self, arch: str) -> Status | None:
        run = self.runs.get(arch)
        return run.status if run else None

    def failed(self) -> bool:
        return any(self.status(a) is Status.FAIL for a in self.runs)

    def cell(self, arch: str) -> str:
        if arch not in self.built:
            return f"{arch}: -"
        if not self.built[arch]:
            return f"{arch}: BUILD FAILED"
        run = self.runs[arch]
        status = run.status.value if run.status else "?"
        return (
            f"{arch}: built / {'booted' if run.booted else 'NO BOOT'} / {status} ({run.summary()})"
        )

    def lines(self, total: int, arches: Sequence[str]) -> list[str]:
        applied = {None: "-", True: "applied", False: "DID NOT APPLY"}[self.applied]
        out = [
            f"  [{self.number}/{total}] {self.title[:60]:<60} {applied:<13} "
            + "; ".join(self.cell(a) for a in arches)
        ]
        if self.apply_error:
            out.append("      " + self.apply_error.replace("\n", "\n      "))
        out += [f"      {a}: {err}" for a, err in self.build_error.items()]
        out += [
            f"      {a} {f.scenario}: {f.status.value} {f.message}"
            for a, run in self.runs.items()
            for f in run.failures()
        ]
        return out


@dataclass
class Verification:
    series: Series
    base: str
    rows: list[PatchRow]
    out: Path

    @property
    def ok(self) -> bool:
        """Everything applied, built, and no tested patch had a non-passing scenario."""
        return all(
            r.applied
            and all(r.built.values())
            and all(r.status(a) in (Status.PASS, Status.SKIP) for a in r.runs)
            for r in self.rows
        )

    def table(self) -> str:
        arches = sorted({a for r in self.rows for a in r.built})
        lines = [f"series {self.series.message_id or '(no Message-ID)'} on {self.base[:12]}:"]
        for r in self.rows:
            lines += r.lines(len(self.rows), arches)
        first = next((r for r in self.rows if r.failed()), None)
        if first is not None:
            lines.append(
                f"first tested patch with a kernel failure: [{first.number}/"
                f"{len(self.rows)}] {first.title}"
            )
        return "\n".join(lines)


def verify(
    tree: Path,
    mbox: Path,
    *,
    base: str | None = None,
    arches: Sequence[str],
    each_commit: bool = False,
    select: str | None = None,
    kbuild_base: str | None = None,
    fragments: list[Path] | None = None,
    accel: str | None = None,
    qemu: str | None = None,
    workers: int = 1,
    out: Path,
) -> Verification:
    series = parse_mbox(mbox)
    wt = Worktree(tree)
    base_rev = base or series.base_commit or "HEAD"
    if base is None and series.base_commit:
        try:
            wt.resolve(series.base_commit)
        except UsageError:
            raise UsageError(
                f"base-commit {series.base_commit} (from {mbox.name}) is not in "
                f"{wt.repo}: fetch it, or give --base REV"
            ) from None
    for arch in arches:  # a missing compiler or QEMU is usage, before anything is applied
        kbuild.check_tools(get_arch(arch))
        if qemu:
            builds.resolve(qemu, get_arch(arch))
    with wt.locked():
        wt.reset_state()
        base_sha = wt.checkout(base_rev)
        rows = [PatchRow(i + 1, p.title) for i, p in enumerate(series.patches)]
        result = Verification(series, base_sha, rows, out)
        if not _apply(wt, series, rows, base_sha):
            return result
        tested = rows if each_commit else rows[-1:]
        for arch_name in arches:
            for row in tested:
                _build_and_test(
                    wt,
                    row,
                    arch_name,
                    select=select,
                    kbuild_base=kbuild_base,
                    fragments=fragments,
                    accel=accel,
                    qemu=qemu,
                    workers=workers,
                    out=out,
                )
    _write_reports(result, wt)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(result.table() + "\n")
    return result


def _apply(wt: Worktree, series: Series, rows: list[PatchRow], base_sha: str) -> bool:
    """git am -3 one patch at a time; on a failure undo everything and say which and why."""
    with tempfile.TemporaryDirectory() as tmp:
        for patch, row in zip(series.patches, rows, strict=True):
            path = Path(tmp) / f"{row.number:04d}.patch"
            path.write_bytes(patch.raw)
            proc = wt.git("am", "-3", str(path), check=False)
            if proc.returncode != 0:
                row.applied = False
                row.apply_error = _git_am_message(proc.stdout + proc.stderr, row.number)
                wt.git("am", "--abort", check=False)
                wt.git("checkout", "-q", "--detach", "--force", base_sha)
                return False
            row.applied = True
            row.commit = wt.head()
    return True


def _git_am_message(text: str, number: int) -> str:
    """git's own words on why, without its advice on continuing an am we abort anyway.
    git numbers the patch 0001 as it gets one at a time: use the series' number."""
    keep = [
        ln.replace("Patch failed at 0001", f"Patch failed at {number:04d}")
        for ln in text.splitlines()
        if ln.startswith(("CONFLICT", "error:", "fatal:", "Patch failed", "Applying:"))
    ]
    return "\n".join(keep[:12]) or text.strip()[-500:]


def _build_and_test(
    wt: Worktree,
    row: PatchRow,
    arch_name: str,
    *,
    select: str | None,
    kbuild_base: str | None,
    fragments: list[Path] | None,
    accel: str | None,
    qemu: str | None,
    workers: int,
    out: Path,
) -> None:
    arch = get_arch(arch_name)
    wt.checkout(row.commit)
    try:
        with progress(f"series patch {row.number} ({row.title[:50]}): build {arch_name}"):
            build_dir = kbuild.build(wt.path, arch, base=kbuild_base, fragments=fragments)
    except (BuildError, kbuild.KconfigError, GitError) as exc:  # the patch's failure to build
        row.built[arch_name] = False
        row.build_error[arch_name] = str(exc)
        return
    row.built[arch_name] = True
    run = run_scenarios(
        f"build:{build_dir}",
        arch_name,
        out / f"patch-{row.number:02d}-{arch_name}",
        select=select,
        accel=accel,
        qemu=qemu,
        workers=workers,
    )
    row.runs[arch_name] = run


def _write_reports(v: Verification, wt: Worktree) -> None:
    """Each run directory gets the series as its checkout, then KCIDB + HTML."""
    checkout = Checkout(
        tree=wt.repo.name,
        commit=v.rows[-1].commit,
        describe=f"{len(v.rows)} patches on {v.base[:12]}",
        patchset_hash=v.series.patchset_hash,
        message_id=v.series.message_id,
        patches=tuple(r.title for r in v.rows),
    )
    for row in v.rows:
        for run in row.runs.values():
            save_checkout(checkout, run.results_dir)
            report.write(run.results_dir)
        for arch, err in row.build_error.items():
            d = v.out / f"patch-{row.number:02d}-{arch}"
            d.mkdir(parents=True, exist_ok=True)
            save_checkout(checkout, d)
            report.write(d, builds=[BuildOutcome(arch, f"build:{wt.path}", Status.FAIL, err)])
