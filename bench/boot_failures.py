"""Boot failure rate under TCG, per setting: how often a guest dies before SSH-ready.

Boots ``--boots`` guests per (kernel, setting), ``--jobs`` at a time (default 2: the load of
``pytest -n 2`` on a 2-core host), in rounds that take every setting once, so that load and
time drift fall on all settings alike. Each boot ends as ``ready``, ``int3`` (an
``Oops: int3``), ``panic`` (any other panic or Oops), ``timeout`` (not ready in time),
``qemu-died`` (QEMU exited without a panic on the console) or ``error`` (anything else). For
failures the record keeps the whole console and, if there is one, the Oops: first line, RIP
symbol, task, call trace and the init stage it hit.

A setting is comma-separated key=value pairs: ``thread`` (multi, single), ``smp`` (vCPUs),
``qemu`` (a QEMU binary other than the arch's one on $PATH) and ``name`` (its label; default:
the setting text; no commas)::

    .venv/bin/python bench/boot_failures.py --kernel debian:7.2 --kernel debian:6.12/cloud \\
        --boots 200 --setting thread=multi,smp=2 --setting thread=single,smp=2 \\
        --setting thread=multi,smp=1 --out boot-failures.json

The last lines, one per (kernel, setting)::

    debian:7.2 thread=multi,smp=2: 200 boots, 1 failures (1 int3), median boot 5.57 s
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threads import run_workers

from harness import images
from harness.arch import ARCHES, Arch, get_arch
from harness.errors import BootTimeout, LaunchError, VMLost
from harness.images import Image
from harness.progress import progress
from harness.qemu.accel import Accel
from harness.qemu.machine import MachineConfig, QemuMachine

DEFAULT_SETTINGS = ("thread=multi,smp=2", "thread=single,smp=2", "thread=multi,smp=1")
OOPS_RE = re.compile(r"Oops: |Kernel panic - not syncing|kernel BUG at|BUG: unable to handle")
STAMP_RE = re.compile(r"^\[\s*\d+\.\d+\] ")  # printk.time=1
RIP_RE = re.compile(r"RIP: [0-9a-f]{4}:(\S+)")
COMM_RE = re.compile(r"^CPU: (\d+) .*PID: (\d+) Comm: (\S+)")


@dataclass(frozen=True)
class Setting:
    name: str
    thread: str = "multi"
    smp: int = 2
    qemu: str | None = None

    @classmethod
    def parse(cls, text: str) -> Setting:
        pairs = [kv.partition("=") for kv in text.split(",") if kv]
        fields = {k: v for k, _, v in pairs}
        if (
            any(not eq for _, eq, _ in pairs)
            or set(fields) - {"name", "thread", "smp", "qemu"}
            or fields.get("thread", "multi") not in ("multi", "single")
            or not fields.get("smp", "2").isdigit()
        ):
            raise argparse.ArgumentTypeError(
                f"bad setting '{text}': want thread=multi|single,smp=N[,qemu=PATH][,name=LABEL]"
            )
        return cls(
            name=fields.pop("name", text),
            thread=fields.get("thread", "multi"),
            smp=int(fields.get("smp", 2)),
            qemu=fields.get("qemu"),
        )

    def config(self, arch: Arch, image: Image, timeout: float | None) -> MachineConfig:
        return MachineConfig(
            arch=arch,
            image=image,
            smp=self.smp,
            qemu_binary=self.qemu,
            accel=Accel("tcg", "bench", thread=self.thread),
            boot_timeout=timeout,
        )


def oops_summary(console: str) -> dict[str, Any] | None:
    """The first Oops/panic on the console: its line, RIP, call trace, what init was doing."""
    lines = [STAMP_RE.sub("", ln) for ln in console.splitlines()]
    start = next((i for i, ln in enumerate(lines) if OOPS_RE.search(ln)), None)
    if start is None:
        return None
    report = lines[start : start + 80]
    rip = next((m.group(1) for ln in report if (m := RIP_RE.search(ln))), None)
    task = next((m for ln in report if (m := COMM_RE.search(ln))), None)
    trace: list[str] = []
    if "Call Trace:" in (text := "\n".join(report)):
        for ln in text.split("Call Trace:", 1)[1].splitlines()[1:]:
            if not ln.startswith(" ") or ln.strip() in ("</TASK>", "</IRQ>"):
                break
            if ln.strip() not in ("<TASK>", "<IRQ>"):
                trace.append(ln.strip())
    stamps = [ln for ln in lines[:start] if ln.startswith("memhp: ")]
    return {
        "first_line": lines[start],
        "rip": rip,
        "call_trace": trace,
        "cpu": int(task[1]) if task else None,
        "pid": int(task[2]) if task else None,
        "comm": task[3] if task else None,
        "last_init_stamp": stamps[-1] if stamps else None,
        "excerpt": "\n".join(lines[max(0, start - 8) : start + 60]),
    }


def boot_once(
    arch: Arch, spec: str, image: Image, setting: Setting, timeout: float | None
) -> dict[str, Any]:
    m = QemuMachine(setting.config(arch, image, timeout))
    record: dict[str, Any] = {"kernel": spec, "setting": setting.name}
    failure: Exception | None = None
    qemu_alive, qemu_log = True, ""
    t0 = time.monotonic()
    try:
        m.launch()
        m.wait_ready()
    except Exception as err:  # any failure is a data point, not the end of the run
        failure, qemu_alive, qemu_log = err, m.alive(), m.qemu_log()
    finally:
        m.shutdown()  # ends QEMU; the console is then read to its end
        record["wall_s"] = round(time.monotonic() - t0, 2)
    record["qemu_version"] = m.qemu_version
    if failure is None:
        return {**record, "outcome": "ready", "boot_s": round(m.boot_seconds, 2)}
    record["message"] = f"{type(failure).__name__}: {failure}"
    console = m.console.text if m.console else ""
    record["console"] = console  # all of it: failures are rare, and hangs need the start
    oops = oops_summary(console)
    if oops:
        record["outcome"] = "int3" if "Oops: int3" in oops["first_line"] else "panic"
        record["oops"] = oops
        return record
    if isinstance(failure, BootTimeout):
        record["outcome"] = "timeout"
    elif isinstance(failure, (VMLost, LaunchError)) and not qemu_alive:
        record["outcome"] = "qemu-died"
        record["qemu_log"] = qemu_log[-2000:]
    else:
        record["outcome"] = "error"
    return record


def summary(
    records: list[dict[str, Any]], kernels: list[str], settings: list[Setting]
) -> list[str]:
    out = []
    for key in ((k, s.name) for k in kernels for s in settings):
        rs = [r for r in records if (r["kernel"], r["setting"]) == key]
        fails = [r for r in rs if r["outcome"] != "ready"]
        int3 = sum(r["outcome"] == "int3" for r in rs)
        times = [r["boot_s"] for r in rs if "boot_s" in r]
        median = f"{statistics.median(times):.2f} s" if times else "n/a"
        out.append(
            f"{key[0]} {key[1]}: {len(rs)} boots, {len(fails)} failures "
            f"({int3} int3), median boot {median}"
        )
    return out


def write_json(path: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**meta, "records": records}, indent=1) + "\n")
    tmp.replace(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", action="append", default=None, metavar="SPEC")
    p.add_argument("--arch", default="x86_64", choices=list(ARCHES))
    p.add_argument("--setting", action="append", type=Setting.parse, default=None)
    p.add_argument("--boots", type=int, default=200, help="boots per kernel and setting")
    p.add_argument("--jobs", type=int, default=2, help="guests booting at once")
    p.add_argument("--timeout", type=float, default=None, help="boot bound, s")
    p.add_argument("--out", type=Path, required=True, help="JSON records")
    args = p.parse_args()
    arch = get_arch(args.arch)
    settings = args.setting or [Setting.parse(s) for s in DEFAULT_SETTINGS]
    progress.quiet = True
    kernels = {spec: images.build(spec, arch) for spec in args.kernel or arch.default_kernels}
    tasks: queue.Queue[tuple[int, str, Setting]] = queue.Queue()
    for n in range(args.boots):
        for spec in kernels:
            for setting in settings:
                tasks.put((n, spec, setting))
    total = tasks.qsize()
    meta = {
        "arch": arch.name,
        "boots": args.boots,
        "jobs": args.jobs,
        "host_cpus": os.cpu_count(),
        "kernels": {s: i.release for s, i in kernels.items()},
        "settings": [vars(s) for s in settings],
    }
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(wid: int) -> None:
        # Boot in this long-lived thread: QEMU's parent-death signal follows the thread
        # that started it (setpriv --pdeathsig is per thread too).
        while not stop.is_set():
            try:
                n, spec, setting = tasks.get_nowait()
            except queue.Empty:
                return
            record = {
                "round": n,
                "worker": wid,
                **boot_once(arch, spec, kernels[spec], setting, args.timeout),
            }
            with lock:
                records.append(record)
                write_json(args.out, meta, records)
                print(
                    f"[{len(records)}/{total}] {spec} {setting.name}: {record['outcome']} "
                    f"{record.get('boot_s', '')}",
                    file=sys.stderr,
                    flush=True,
                )

    run_workers(worker, args.jobs, stop, "boot")
    print("\n".join(summary(records, list(kernels), settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
