"""Timer stalls in ppc64le guests restored from a saved boot, per QEMU and restore workaround.

QEMU's TCG ppc before v8.2 does not migrate the decrementer (commit 578912ad7312
("target/ppc: Migrate DECR SPR")); saved boots were turned off on ppc64le after restored
guests on 7.2 sometimes lost a vCPU's timer interrupts (harness/arch.py). This restores
ppc64le guests from saved boots ``--restores`` times per (setting, kernel), ``--jobs`` at a
time, in rounds that take every setting once. Each restored guest lives ``--alive`` seconds
(default 30, past the RCU stall warning's 21 s) doing light work: every ``--every`` s an SSH
``true``, and on each vCPU a 0.1 s sleep pinned there (``taskset -c N sleep 0.1``: its
hrtimer is that CPU's, so on a vCPU whose decrementer is dead it does not end). A restore
stalls when the console or dmesg says ``rcu_sched kthread timer wakeup didn't happen`` or
``rcu: INFO: ... stall``, the guest cannot be reached or reports a lockup, an SSH command
takes over 5 s, or a pinned sleep takes over 2 s (a *stuck* vCPU).

A setting is key=value pairs: ``qemu`` (host, or a memhp QEMU spec such as debian:10.0),
``rearm`` (none; taskset: run ``true`` pinned to each vCPU; trace: make each vCPU queue an
irq_work, which writes DEC=1, harness.arch ``REARM_DECREMENTERS``; harness: whatever
QemuMachine.restore does for the arch's ``saved_boots`` on that QEMU), ``restores`` (per
kernel, instead of ``--restores``), ``busy`` (1: restore saved boots taken while vCPU 1 ran
a busy loop, ``BUSY_LOOP``, so that its tick was running) and ``name``.
Saved boots: ``--saves`` per (QEMU, kernel), each booted afresh (the state a restore starts
from is the state at the save), kept in ~/.cache/memhp/snapshots while the run lasts::

    nice -n 10 .venv/bin/python bench/restore_stalls.py --restores 40 --saves 4 \\
        --setting qemu=host,rearm=none --setting qemu=host,rearm=trace \\
        --setting qemu=host,rearm=taskset --setting qemu=debian:10.0,rearm=none,restores=4 \\
        --setting qemu=debian:11.1,rearm=none,restores=4 --minutes 40 --out stalls.json

The last lines, one per setting (both kernels)::

    qemu=host,rearm=none: 24 restores (debian:6.1, debian:6.12), 0 stalls (0 stuck vCPU,
    0 RCU warning), median restore-to-SSH 0.55 s
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

from harness import cache, images
from harness.arch import REARM_DECREMENTERS, Arch, get_arch
from harness.errors import LaunchError, QMPCommandError, SSHError
from harness.images import Image
from harness.progress import progress
from harness.qemu.accel import Accel
from harness.qemu.builds import HOST, QemuBuild, resolve
from harness.qemu.machine import MachineConfig, QemuMachine

STALL_RE = re.compile(
    r"rcu_sched kthread timer wakeup didn't happen|rcu: INFO: rcu_sched .*stall|"
    r"rcu_sched self-detected stall|detected stalls on CPUs"
)
# Taken just before a save, for ``busy`` settings: vCPU 1 runs (its tick is not stopped) when
# the guest is saved, which a restored guest resumes. It loops about as long as the guest
# lives.
BUSY_LOOP = (
    "taskset -c 1 sh -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done' >/dev/null 2>&1 &"
)
SSH_SLOW = 5.0
SLEEP_SLOW = 2.0
REARMS = {
    "none": None,
    # what the restore leaves idle wakes up; whether that reprograms DEC depends on the
    # CPU's tick state (tick_nohz_idle_exit restarts only a stopped tick)
    "taskset": "n=$(nproc --all); for c in $(seq 0 $((n-1))); do taskset -c $c true; done",
    "trace": REARM_DECREMENTERS,
    "harness": None,  # the arch's own SavedBoots: QemuMachine.restore runs its fixup
}


@dataclass(frozen=True)
class Setting:
    name: str
    qemu: str = HOST
    rearm: str = "none"
    restores: int | None = None  # per kernel; None: --restores
    busy: bool = False  # restore the saved boots taken with vCPU 1 busy (BUSY_LOOP)

    @classmethod
    def parse(cls, text: str) -> Setting:
        fields = dict(kv.partition("=")[::2] for kv in text.split(",") if kv)
        if (
            set(fields) - {"name", "qemu", "rearm", "restores", "busy"}
            or fields.get("rearm", "none") not in REARMS
            or not fields.get("restores", "1").isdigit()
        ):
            raise argparse.ArgumentTypeError(
                f"bad setting {text!r}: want qemu=SPEC,"
                "rearm=none|taskset|trace|harness[,restores=N][,busy=1][,name=LABEL]"
            )
        restores = int(fields["restores"]) if "restores" in fields else None
        name, qemu = fields.get("name", text), fields.get("qemu", HOST)
        busy = fields.get("busy", "0") not in ("0", "no")
        return cls(name, qemu, fields.get("rearm", "none"), restores, busy)


def config(arch: Arch, image: Image, qemu: QemuBuild) -> MachineConfig:
    return MachineConfig(arch=arch, image=image, qemu=qemu, accel=Accel("tcg", "bench"))


def save(m: QemuMachine, path: Path) -> None:
    """m.save(path), past QMP's "Migration is not finalized yet" for the ``cont`` that
    follows the MIGRATION completed event (seen under load with 7.2)."""
    try:
        m.save(path)
    except QMPCommandError as err:
        if "not finalized" not in str(err):
            raise
        for _ in range(50):
            time.sleep(0.2)
            with contextlib.suppress(QMPCommandError):
                m.qmp("cont")
                break
        path.with_name(f"{path.name}.{os.getpid()}.part").replace(path)


def stall_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if STALL_RE.search(ln)]


def restore_once(
    arch: Arch, image: Image, qemu: QemuBuild, saved: Path, setting: Setting, args: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {"setting": setting.name, "kernel": image.spec, "saved": saved.name}
    if setting.rearm == "harness":
        arch = get_arch("ppc64le")
    m = QemuMachine(dataclasses.replace(config(arch, image, qemu), restore_from=saved))
    mark = 0
    try:
        m.launch()
        if m.console is not None:
            mark = m.console.mark()
        t0 = time.monotonic()
        try:
            m.restore(saved)
        except (LaunchError, SSHError) as err:
            if setting.rearm != "harness":
                raise
            # the harness refuses this restore and boots instead (harness.plugin.pool)
            rec["outcome"] = "fallback"
            rec["message"] = f"{type(err).__name__}: {err}"
            return rec
        rec["restore_s"] = round(m.boot_seconds, 2)
        guest = m.ready_guest()
        rearm = REARMS[setting.rearm]
        if rearm is not None:
            loc = "grep LOC /proc/interrupts"
            rec["loc_before"] = guest.run(loc).stdout.splitlines()
            t = time.monotonic()
            guest.run(rearm, timeout=60)
            rec["rearm_s"] = round(time.monotonic() - t, 2)
            rec["loc_after"] = guest.run(loc).stdout.splitlines()
        ncpu = int(guest.run("nproc --all").stdout.strip())
        ssh, sleeps = [], []
        while time.monotonic() - t0 < args.alive:
            t = time.monotonic()
            guest.run("true", timeout=60)
            ssh.append(round(time.monotonic() - t, 2))
            for c in range(ncpu):
                t = time.monotonic()
                res = guest.run(f"taskset -c {c} sleep 0.1", check=False, timeout=30)
                sleeps.append((c, round(time.monotonic() - t, 2) if res.status == 0 else 99.0))
            if any(s > SLEEP_SLOW for _, s in sleeps):
                break  # a stuck vCPU: counted, no need to wait for its stall warning
            time.sleep(max(0.0, args.every - (time.monotonic() - t)))
        rec["ssh_max_s"] = max(ssh)
        rec["slow_ssh"] = [s for s in ssh if s > SSH_SLOW]
        rec["stuck"] = [(c, s) for c, s in sleeps if s > SLEEP_SLOW]
        rec["sleep_max_s"] = max(s for _, s in sleeps)
        dmesg = guest.run("dmesg", timeout=60).stdout
        rec["dmesg_stalls"] = stall_lines(dmesg)
        rec["outcome"] = "ok"
    except Exception as err:  # a data point, not the end of the run
        rec["outcome"] = "error"
        rec["message"] = f"{type(err).__name__}: {err}"
    finally:
        m.shutdown()
    console = m.console.text[mark:] if m.console else ""
    rec["console_stalls"] = stall_lines(console)
    rec["stalled"] = bool(
        rec["console_stalls"]
        or rec.get("dmesg_stalls")
        or rec.get("slow_ssh")
        or rec.get("stuck")
        or rec["outcome"] != "ok"
    )
    if rec["stalled"]:
        rec["console_tail"] = console[-6000:]
    return rec


def summary(records: list[dict[str, Any]], settings: list[Setting]) -> list[str]:
    out = []
    for s in settings:
        rs = [r for r in records if r["setting"] == s.name]
        fallbacks = sum(r["outcome"] == "fallback" for r in rs)
        stalls = [r for r in rs if r.get("stalled")]
        stuck = sum(bool(r.get("stuck")) for r in rs)
        rcu = sum(bool(r.get("console_stalls") or r.get("dmesg_stalls")) for r in rs)
        times = [r["restore_s"] for r in rs if "restore_s" in r]
        median = f"{statistics.median(times):.2f} s" if times else "n/a"
        kernels = sorted({r["kernel"] for r in rs})
        out.append(
            f"{s.name}: {len(rs)} restores ({', '.join(kernels)}), {len(stalls)} stalls "
            f"({stuck} stuck vCPU, {rcu} RCU warning), {fallbacks} refused (booted instead), "
            f"median restore-to-SSH {median}"
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", action="append", default=None, metavar="SPEC")
    p.add_argument("--setting", action="append", type=Setting.parse, required=True)
    p.add_argument("--restores", type=int, default=50, help="per setting and kernel")
    p.add_argument("--saves", type=int, default=3, help="saved boots per QEMU and kernel")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--alive", type=float, default=30.0, help="s each restored guest lives")
    p.add_argument("--every", type=float, default=3.0, help="s between probes")
    p.add_argument("--minutes", type=float, default=None, help="start no restore after this")
    p.add_argument("--keep-saves", action="store_true", help="leave the saved boots")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    arch = get_arch("ppc64le")
    arch = dataclasses.replace(arch, saved_boots=True)  # what the bench measures
    progress.quiet = True
    start = time.monotonic()
    kernels = {spec: images.build(spec, arch) for spec in args.kernel or arch.default_kernels}
    qemus = {s.qemu: resolve(s.qemu, arch) for s in args.setting}
    saves: dict[tuple[str, str, bool], list[Path]] = {}
    jobs: queue.Queue[tuple[Image, QemuBuild, Path, bool]] = queue.Queue()
    for q, busy in dict.fromkeys((s.qemu, s.busy) for s in args.setting):
        build = qemus[q]
        for spec, image in kernels.items():
            tag = f"{build.version}-{image.path.name}{'-busy' if busy else ''}"
            saves[(q, spec, busy)] = [
                cache.path("snapshots", f"bench-restore-stalls-{tag}-{i}.mig")
                for i in range(args.saves)
            ]
            for path in saves[(q, spec, busy)]:
                jobs.put((image, build, path, busy))

    def saver() -> None:
        while True:
            try:
                image, build, path, busy = jobs.get_nowait()
            except queue.Empty:
                return
            if not path.is_file():
                with QemuMachine(config(arch, image, build)) as m:
                    if busy:
                        m.ready_guest().run(BUSY_LOOP)
                        time.sleep(1)
                    save(m, path)
            print(f"saved {path.name}", file=sys.stderr, flush=True)

    savers = [threading.Thread(target=saver) for _ in range(args.jobs)]
    for t in savers:
        t.start()
    for t in savers:
        t.join()
    tasks: queue.Queue[tuple[int, str, Setting]] = queue.Queue()
    for n in range(args.restores):
        for spec in kernels:
            for s in args.setting:
                if s.restores is None or n < s.restores:
                    tasks.put((n, spec, s))
    total = tasks.qsize()
    meta = {
        "arch": arch.name,
        "host_cpus": os.cpu_count(),
        "alive_s": args.alive,
        "kernels": {s: i.release for s, i in kernels.items()},
        "qemus": {q: b.version for q, b in qemus.items()},
        "settings": [vars(s) for s in args.setting],
        "rearm_commands": {k: v for k, v in REARMS.items() if v},
    }
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(_: int) -> None:
        while not stop.is_set():
            if args.minutes and time.monotonic() - start > args.minutes * 60:
                return
            try:
                n, spec, s = tasks.get_nowait()
            except queue.Empty:
                return
            saved = saves[(s.qemu, spec, s.busy)][n % args.saves]
            rec = restore_once(arch, kernels[spec], qemus[s.qemu], saved, s, args)
            with lock:
                records.append({"round": n, **rec})
                tmp = args.out.with_name(args.out.name + ".tmp")
                tmp.write_text(json.dumps({**meta, "records": records}, indent=1) + "\n")
                tmp.replace(args.out)
                print(
                    f"[{len(records)}/{total}] {spec} {s.name} {saved.name}: "
                    f"{'STALL' if rec.get('stalled') else rec['outcome']} "
                    f"restore {rec.get('restore_s')} s "
                    f"stuck {rec.get('stuck')} {rec.get('message', '')}",
                    file=sys.stderr,
                    flush=True,
                )

    run_workers(worker, args.jobs, stop, "restore")
    if not args.keep_saves:
        for paths in saves.values():
            for path in paths:
                path.unlink(missing_ok=True)
                path.with_suffix(".console").unlink(missing_ok=True)
    print("\n".join(summary(records, args.setting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
