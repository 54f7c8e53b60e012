"""The HTML report of a results directory: the matrix, each failure with its expected-vs-seen
text and guest dmesg (or the console tail for an infrastructure error), and the page-flag
pictures of each scenario."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

from harness.report.kcidb import BuildOutcome
from harness.report.pagemap import COLOURS, LABELS
from harness.report.results import Checkout, Result, RunRecord
from harness.verdict import PRIORITY, Status

STATUS_COLOUR = {
    Status.PASS: "#3a3",
    Status.FAIL: "#c22",
    Status.ERROR: "#d80",
    Status.MISS: "#d80",
    Status.SKIP: "#888",
}


STATUS_MEANING = {
    Status.FAIL: "kernel failure",
    Status.ERROR: "infrastructure/harness error",
    Status.MISS: "did not run (infrastructure)",
    Status.SKIP: "not applicable",
    Status.PASS: "passed",
}


CSS = """body{font-family:sans-serif;margin:2em;max-width:80em}
td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:85%}
.s{color:#fff;padding:0 .4em;border-radius:3px;font-weight:bold}
.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}
img{image-rendering:pixelated;border:1px solid #ccc;width:100%;max-width:60em}"""


def _badge(s: Status) -> str:
    return f'<span class="s" style="background:{STATUS_COLOUR[s]}">{s.value}</span>'


def html_report(
    results: Sequence[Result],
    checkout: Checkout | None = None,
    builds: Sequence[BuildOutcome] = (),
    runs: Sequence[RunRecord] = (),
) -> str:
    e = html.escape
    counts = Counter(r.status for r in results)
    cut = [r for r in runs if not r.complete]
    title = "memhp report" + (" (INCOMPLETE RUN)" if cut else "")
    out = [
        f"<!doctype html><meta charset=utf-8><title>{title}</title>",
        f"<style>{CSS}</style><h1>{title}</h1>",
    ]
    for run in cut:
        colour = STATUS_COLOUR[Status.FAIL if run.interrupted_by else Status.MISS]
        out.append(
            f'<p class="s" style="background:{colour};padding:.4em">{e(run.describe())}; '
            "what never ran has no verdict (MISS below)</p>"
        )
    if checkout is not None:
        out.append(
            f"<p>Tree <b>{e(checkout.tree)}</b> at <code>{e(checkout.commit[:12])}"
            f"</code> {e(checkout.describe)}"
        )
        if checkout.message_id:
            out.append(f"<br>Series {e(checkout.message_id)}")
        if checkout.patches:
            out.append("<ol>" + "".join(f"<li>{e(p)}" for p in checkout.patches) + "</ol>")
    out.append(
        "<p>"
        + " ".join(f"{_badge(s)} {counts[s]} {STATUS_MEANING[s]}" for s in Status if counts[s])
        + "</p>"
    )
    for b in builds:
        if b.status is not Status.PASS:
            out.append(
                f"<h2>Build {e(b.arch)} {e(b.kernel)} {_badge(b.status)}</h2>"
                f"<pre>{e(b.log_excerpt)}</pre>"
            )
    out.append(_matrix(results))
    bad = sorted(  # the kernel's failures first, each with its picture on top
        (r for r in results if r.status not in (Status.PASS, Status.SKIP)),
        key=lambda r: PRIORITY.index(r.status),
    )
    if bad:
        out.append("<h2>Failures</h2>")
        out.extend(_detail(r, open_maps=True) for r in bad)
    pictured = [r for r in results if r.maps and r.status in (Status.PASS, Status.SKIP)]
    if pictured:
        out.append("<h2>Page-flag maps of passing scenarios</h2>")
        out.extend(_detail(r, open_maps=False) for r in pictured)
    return "\n".join(out)


def _matrix(results: Sequence[Result]) -> str:
    e = html.escape
    targets = sorted({r.target for r in results})
    rows: dict[str, dict[tuple[str, str, str], Result]] = {}
    for r in results:
        rows.setdefault(r.scenario, {})[r.target] = r
    head = "".join(f"<th>{e(a)}<br>{e(k)}<br>QEMU {e(q)}</th>" for a, k, q in targets)
    body = []
    for name in sorted(rows):
        cells = "".join(
            f'<td><a href="#{rows[name][t].slug}">{_badge(rows[name][t].status)}</a></td>'
            if t in rows[name]
            else "<td>-</td>"
            for t in targets
        )
        body.append(f"<tr><td>{e(name)}</td>{cells}</tr>")
    return f"<table><tr><th>scenario</th>{head}</tr>{''.join(body)}</table>"


def _legend() -> str:
    return (
        "<p>"
        + "".join(
            f'<span class="sw" style="background:rgb{COLOURS[c]}"></span>{html.escape(LABELS[c])}'
            for c in COLOURS
        )
        + "</p>"
    )


def _detail(r: Result, open_maps: bool) -> str:
    e = html.escape
    parts = [
        f'<h3 id="{r.slug}">{e(r.scenario)} on {e(r.arch)} {e(r.kernel)} {_badge(r.status)}</h3>',
        f"<p>{e(STATUS_MEANING[r.status])}; kernel {e(r.release or '?')}, "
        f"QEMU {e(r.qemu or '?')} ({e(r.accel or '?')}), {r.duration:.1f} s, "
        f"<code>{e(r.nodeid)}</code></p>",
    ]
    if r.message:
        parts.append(f"<p><b>{e(r.message)}</b></p>")
    if r.known:
        parts.append(f"<p><i>{e(r.known)}</i></p>")
    if r.repeats:
        parts.append(f"<p>Repeated on fresh guests: <b>{e(r.repeat_summary())}</b></p>")
    if r.repro:
        parts.append(
            f'<p>Reproducer without memhp: <a href="{e(r.repro)}"><code>{e(r.repro)}</code></a> '
            "(bash, ssh and the same QEMU; exit 1 when the failure reproduces)</p>"
        )
    for m in r.maps:
        steps = "".join(
            f"<tr><td>{e(s['step'])}</td><td>"
            + "<br>".join(
                f"block {b['index'] if b['index'] is not None else '-'}: {e(b['state'])}"
                f"{' ' + e(b['zone']) if b['zone'] else ''} {e(_pages(b['pages']))}"
                for b in s["blocks"]
            )
            + "</td></tr>"
            for s in m.steps
        )
        parts.append(
            f"<details{' open' if open_maps else ''}><summary>page-flag map: one "
            "column per step (left to right), one tile per memory block</summary>"
            f'<img src="{e(m.png)}" alt="page-flag map">{_legend()}'
            f"<table>{steps}</table></details>"
        )
    if r.log_excerpt:
        title = (
            "console tail (infrastructure)"
            if r.status.infrastructure
            else "failure details and guest dmesg"
        )
        parts.append(
            f"<details open><summary>{title}</summary><pre>{e(r.log_excerpt)}</pre></details>"
        )
    return "\n".join(parts)


def _pages(hist: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in hist.items()) + "}"
