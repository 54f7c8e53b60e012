"""Night to night: which scenarios flipped, per target. A FAIL where the base had none (it
passed, skipped or got no verdict) is a regression, or flaky when a rerun on a fresh guest
passed (--repeat), and
FAIL -> PASS a fix; infrastructure errors are listed apart (they say nothing of the kernel),
as are scenarios that appeared or vanished. This is what a nightly mails."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field

from harness.report.results import Result, RunRecord
from harness.verdict import Status

Key = tuple[str, str, str, str]  # arch, kernel spec, QEMU spec, scenario


@dataclass(frozen=True)
class Flip:
    key: Key
    base: Result | None
    new: Result | None
    only_on: str = ""  # the one QEMU that shows it, where others ran the same and did not

    def line(self) -> str:
        arch, kernel, qemu, scenario = self.key
        was = self.base.status.value if self.base else "-"
        now = self.new.status.value if self.new else "-"
        release = ""
        if self.base and self.new and self.base.release != self.new.release:
            release = f"  [{self.base.release} -> {self.new.release}]"
        if self.base and self.new and self.base.qemu != self.new.qemu:
            release += f"  [QEMU {self.base.qemu} -> {self.new.qemu}]"
        only = f"  (only on QEMU {self.only_on})" if self.only_on else ""
        why = f"  {self.new.message}" if self.new and self.new.message else ""
        if self.new and self.new.repeats:
            why = f"  [{self.new.repeat_summary()}]{why}"
        return f"{arch} {kernel} on QEMU {qemu} {scenario}: {was} -> {now}{release}{only}{why}"


@dataclass
class Comparison:
    regressions: list[Flip] = field(default_factory=list)
    flaky: list[Flip] = field(default_factory=list)  # now FAIL, but passed on a rerun
    fixes: list[Flip] = field(default_factory=list)
    infrastructure: list[Flip] = field(default_factory=list)
    new: list[Flip] = field(default_factory=list)
    vanished: list[Flip] = field(default_factory=list)
    changed: list[Flip] = field(default_factory=list)  # e.g. PASS -> SKIP
    unchanged: int = 0
    incomplete: list[str] = field(default_factory=list)  # "new: INTERRUPTED by SIGTERM: ..."

    def sections(self) -> list[tuple[str, list[Flip]]]:
        return [
            ("regressions (now FAIL)", self.regressions),
            ("flaky (now FAIL some of the times: --repeat)", self.flaky),
            ("fixes (FAIL -> PASS)", self.fixes),
            ("infrastructure errors (no kernel verdict)", self.infrastructure),
            ("new scenarios", self.new),
            ("vanished scenarios", self.vanished),
            ("other changes", self.changed),
        ]

    def text(self) -> str:
        out = [f"incomplete run, {line}" for line in self.incomplete]
        for title, flips in self.sections():
            if flips:
                out.append(f"{title}: {len(flips)}")
                out += [f"  {f.line()}" for f in flips]
        out.append(
            f"{len(self.regressions)} regression(s), {len(self.flaky)} flaky, "
            f"{len(self.fixes)} fix(es), "
            f"{len(self.infrastructure)} infrastructure error(s), {self.unchanged} "
            "unchanged"
        )
        return "\n".join(out)

    def html(self, base: str, new: str) -> str:
        e = html.escape
        out = [
            "<!doctype html><meta charset=utf-8><title>memhp compare</title>",
            "<style>body{font-family:sans-serif;margin:2em}td{padding:.1em .6em}"
            "h2.r{color:#c22}h2.f{color:#3a3}</style>",
            f"<h1>memhp: {e(new)} against {e(base)}</h1><p>{e(self.text().splitlines()[-1])}",
        ]
        out += [
            f"<p style='color:#c22'><b>incomplete run, {e(line)}</b>" for line in self.incomplete
        ]
        for (title, flips), cls in zip(
            self.sections(), ("r", "", "f", "", "", "", ""), strict=True
        ):
            if not flips:
                continue
            out.append(f"<h2 class={cls or 'x'}>{e(title)}: {len(flips)}</h2><table>")
            out += [
                f"<tr><td>{e(f.key[0])}<td>{e(f.key[1])}<td>{e(f.key[2])}<td>{e(f.key[3])}<td>"
                f"{e(f.base.status.value if f.base else '-')} &rarr; "
                f"{e(f.new.status.value if f.new else '-')}<td>"
                f"{e(f.new.message if f.new else '')}"
                for f in flips
            ]
            out.append("</table>")
        return "\n".join(out)


def _only_on(flip: Flip, new: dict[Key, Result]) -> Flip:
    """A regression the same kernel and scenario do not show on another QEMU of this run is
    named as that QEMU's: a QEMU change, or a kernel bug only one QEMU reaches."""
    arch, kernel, qemu, scenario = flip.key
    others = [
        r for (a, k, q, s), r in new.items() if (a, k, s) == (arch, kernel, scenario) and q != qemu
    ]
    if others and all(r.status is Status.PASS for r in others):
        return dataclasses.replace(flip, only_on=qemu)
    return flip


def compare(
    base: list[Result],
    new: list[Result],
    base_runs: list[RunRecord] | None = None,
    new_runs: list[RunRecord] | None = None,
) -> Comparison:
    def keyed(results: list[Result]) -> dict[Key, Result]:
        return {(r.arch, r.kernel, r.qemu_spec, r.scenario): r for r in results}

    before, after = keyed(base), keyed(new)
    c = Comparison()
    for side, runs in (("base", base_runs or []), ("new", new_runs or [])):
        c.incomplete += [f"{side}: {r.describe()}" for r in runs if not r.complete]
    for key in sorted(before.keys() | after.keys()):
        b, n = before.get(key), after.get(key)
        flip = Flip(key, b, n)
        if n is None:
            c.vanished.append(flip)
        elif n.status.infrastructure:
            c.infrastructure.append(flip)
        elif b is None:
            c.new.append(flip)
        elif b.status is n.status:
            c.unchanged += 1
        elif n.status is Status.FAIL and n.known:
            c.changed.append(flip)  # a known kernel bug: not this night's news
        elif n.status is Status.FAIL and n.flaky:  # passed on a fresh guest too
            c.flaky.append(flip)
        elif n.status is Status.FAIL:  # a kernel failure where the base had none
            c.regressions.append(_only_on(flip, after))
        elif b.status is Status.FAIL and n.status is Status.PASS:
            c.fixes.append(flip)
        else:
            c.changed.append(flip)
    return c
