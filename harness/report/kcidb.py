"""Reports from one results directory: KCIDB v5.3 JSON and a readable HTML page.

(JUnit comes from pytest itself, ``--junitxml``; the plugin adds kernel/arch/QEMU as suite
properties.) KCIDB statuses keep the kernel's verdicts apart from ours: FAIL is the kernel,
ERROR/MISS the harness or infrastructure, SKIP not applicable (see harness.results).
"""

from __future__ import annotations

import hashlib
import html
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.pagemap import COLOURS, LABELS
from harness.report.results import Checkout, Result, Status, load, load_checkout

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
    return text if len(text) <= LOG_EXCERPT_MAX else "...\n" + text[-(LOG_EXCERPT_MAX - 4):]


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def kcidb_path(result: Result) -> str:
    """KCIDB's dot-separated test path: memhp.<file>.<scenario>."""
    module = result.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    parts = [module.removeprefix("test_"), result.scenario.removeprefix("test_")]
    return ".".join([ORIGIN, *("".join(c if c.isalnum() or c in "_-" else "-" for c in p)
                               for p in parts)])


def kcidb(results: Sequence[Result], checkout: Checkout | None = None,
          builds: Sequence[BuildOutcome] = (), run_id: str | None = None) -> dict[str, Any]:
    """The KCIDB v5.3 document: checkouts, builds, one test per scenario run."""
    run = run_id or uuid.uuid4().hex[:12]
    checkouts: dict[str, dict[str, Any]] = {}
    build_docs: dict[tuple[str, str], dict[str, Any]] = {}

    def checkout_id(kernel: str, release: str) -> str:
        if checkout is not None:
            cid = _id(run, "checkout", checkout.commit, checkout.patchset_hash)
            checkouts.setdefault(cid, _checkout_doc(cid, checkout, run))
            return cid
        cid = _id(run, "checkout", kernel)
        checkouts.setdefault(cid, {"id": cid, "origin": ORIGIN, "valid": True,
                                   "tree_name": kernel.split(":", 1)[0],
                                   "comment": f"kernel {kernel}" + (
                                       f" ({release})" if release else "")})
        return cid

    def build_id(arch: str, kernel: str, release: str) -> str:
        key = (arch, kernel)
        if key not in build_docs:
            bid = _id(run, "build", arch, kernel)
            build_docs[key] = {"id": bid, "origin": ORIGIN,
                               "checkout_id": checkout_id(kernel, release),
                               "architecture": arch, "config_name": _config_name(kernel),
                               "status": Status.PASS.value,
                               "comment": f"{kernel}" + (f" ({release})" if release else "")}
        return str(build_docs[key]["id"])

    for b in builds:
        build_id(b.arch, b.kernel, "")
        doc = build_docs[(b.arch, b.kernel)]
        doc["status"] = b.status.value
        doc["duration"] = round(b.duration, 1)
        if b.log_excerpt:
            doc["log_excerpt"] = _excerpt(b.log_excerpt)
    tests = [_test_doc(r, build_id(r.arch, r.kernel, r.release), run) for r in results]
    return {"version": KCIDB_VERSION, "checkouts": list(checkouts.values()),
            "builds": list(build_docs.values()), "tests": tests}


def _checkout_doc(cid: str, c: Checkout, run: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": cid, "origin": ORIGIN, "valid": True,
                           "patchset_hash": c.patchset_hash}
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
        "id": _id(run, "test", r.nodeid), "origin": ORIGIN, "build_id": build_id,
        "path": kcidb_path(r), "status": r.status.value, "start_time": _rfc3339(r.start_time),
        "duration": round(r.duration, 3),
        "environment": {"comment": f"QEMU {r.qemu or '?'} ({r.accel or '?'})",
                        "misc": {"kernel_release": r.release}},
        "misc": {"nodeid": r.nodeid, "phase": r.phase, "message": r.message,
                 "page_flag_maps": [m.png for m in r.maps],
                 "infrastructure": r.status.infrastructure},
    }
    if r.log_excerpt:
        doc["log_excerpt"] = _excerpt(r.log_excerpt)
    if r.message:
        doc["comment"] = r.message[:500]
    return doc


# -- HTML ----------------------------------------------------------------------------------

STATUS_COLOUR = {Status.PASS: "#3a3", Status.FAIL: "#c22", Status.ERROR: "#d80",
                 Status.MISS: "#d80", Status.SKIP: "#888"}
STATUS_MEANING = {Status.FAIL: "kernel failure", Status.ERROR: "infrastructure/harness error",
                  Status.MISS: "did not run (infrastructure)", Status.SKIP: "not applicable",
                  Status.PASS: "passed"}
CSS = """body{font-family:sans-serif;margin:2em;max-width:80em}
td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:85%}
.s{color:#fff;padding:0 .4em;border-radius:3px;font-weight:bold}
.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}
img{image-rendering:pixelated;border:1px solid #ccc;width:100%;max-width:60em}"""


def _badge(s: Status) -> str:
    return f'<span class="s" style="background:{STATUS_COLOUR[s]}">{s.value}</span>'


def html_report(results: Sequence[Result], checkout: Checkout | None = None,
                builds: Sequence[BuildOutcome] = ()) -> str:
    e = html.escape
    counts = Counter(r.status for r in results)
    out = ["<!doctype html><meta charset=utf-8><title>memhp report</title>",
           f"<style>{CSS}</style><h1>memhp report</h1>"]
    if checkout is not None:
        out.append(f"<p>Tree <b>{e(checkout.tree)}</b> at <code>{e(checkout.commit[:12])}"
                   f"</code> {e(checkout.describe)}")
        if checkout.message_id:
            out.append(f"<br>Series {e(checkout.message_id)}")
        if checkout.patches:
            out.append("<ol>" + "".join(f"<li>{e(p)}" for p in checkout.patches) + "</ol>")
    out.append("<p>" + " ".join(f"{_badge(s)} {counts[s]} {STATUS_MEANING[s]}"
                                for s in Status if counts[s]) + "</p>")
    for b in builds:
        if b.status is not Status.PASS:
            out.append(f"<h2>Build {e(b.arch)} {e(b.kernel)} {_badge(b.status)}</h2>"
                       f"<pre>{e(b.log_excerpt)}</pre>")
    out.append(_matrix(results))
    bad = [r for r in results if r.status not in (Status.PASS, Status.SKIP)]
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
    targets = sorted({(r.arch, r.kernel) for r in results})
    rows: dict[str, dict[tuple[str, str], Result]] = {}
    for r in results:
        rows.setdefault(r.scenario, {})[(r.arch, r.kernel)] = r
    head = "".join(f"<th>{e(a)}<br>{e(k)}</th>" for a, k in targets)
    body = []
    for name in sorted(rows):
        cells = "".join(
            f'<td><a href="#{rows[name][t].slug}">{_badge(rows[name][t].status)}</a></td>'
            if t in rows[name] else "<td>-</td>" for t in targets)
        body.append(f"<tr><td>{e(name)}</td>{cells}</tr>")
    return f"<table><tr><th>scenario</th>{head}</tr>{''.join(body)}</table>"


def _legend() -> str:
    return "<p>" + "".join(
        f'<span class="sw" style="background:rgb{COLOURS[c]}"></span>{html.escape(LABELS[c])}'
        for c in COLOURS) + "</p>"


def _detail(r: Result, open_maps: bool) -> str:
    e = html.escape
    parts = [f'<h3 id="{r.slug}">{e(r.scenario)} on {e(r.arch)} {e(r.kernel)} '
             f"{_badge(r.status)}</h3>",
             f"<p>{e(STATUS_MEANING[r.status])}; kernel {e(r.release or '?')}, "
             f"QEMU {e(r.qemu or '?')} ({e(r.accel or '?')}), {r.duration:.1f} s, "
             f"<code>{e(r.nodeid)}</code></p>"]
    if r.message:
        parts.append(f"<p><b>{e(r.message)}</b></p>")
    if r.log_excerpt:
        title = ("console tail (infrastructure)" if r.status.infrastructure
                 else "failure details and guest dmesg")
        parts.append(f"<details open><summary>{title}</summary>"
                     f"<pre>{e(r.log_excerpt)}</pre></details>")
    for m in r.maps:
        steps = "".join(
            f"<tr><td>{e(s['step'])}</td><td>" + "<br>".join(
                f"block {b['index'] if b['index'] is not None else '-'}: {e(b['state'])}"
                f"{' ' + e(b['zone']) if b['zone'] else ''} {e(_pages(b['pages']))}"
                for b in s["blocks"]) + "</td></tr>" for s in m.steps)
        parts.append(f"<details{' open' if open_maps else ''}><summary>page-flag map: one "
                     "column per step (left to right), one tile per memory block</summary>"
                     f'<img src="{e(m.png)}" alt="page-flag map">{_legend()}'
                     f"<table>{steps}</table></details>")
    return "\n".join(parts)


def _pages(hist: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in hist.items()) + "}"


def write(results_dir: Path, builds: Sequence[BuildOutcome] = ()) -> tuple[Path, Path]:
    """kcidb.json and report.html for everything in ``results_dir``."""
    results = load(results_dir)
    checkout = load_checkout(results_dir)
    kc = results_dir / "kcidb.json"
    kc.write_text(json.dumps(kcidb(results, checkout, builds), indent=1))
    page = results_dir / "report.html"
    page.write_text(html_report(results, checkout, builds))
    return kc, page
