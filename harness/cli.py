"""The ``memhp`` command: build images, run the scenarios, get a shell in a guest."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from harness import images, preflight, workers
from harness.arch import ARCHES, get_arch
from harness.errors import (
    EXIT_INFRA,
    EXIT_KERNEL,
    EXIT_USAGE,
    BuildError,
    HarnessError,
    InfrastructureError,
    KernelFailure,
    MemhpError,
    UsageError,
)
from harness.images import lockfile
from harness.qemu import builds
from harness.qemu.accel import ACCELS, choose_accel
from harness.qemu.config import MachineConfig
from harness.qemu.machine import QemuMachine
from harness.report import compare, merge, submit
from harness.report.results import RECORDS, load_runs
from harness.report.results import load as load_results
from harness.resources import TESTCASES
from harness.scenarios import Selection, check_pytest_args
from harness.signals import interrupt_on_termination

# A series is built for each arch; ppc64le's cross build is a half hour cold: only on request.
SERIES_ARCHES = ("x86_64",)
KERNEL_HELP = "debian:X.Y[/flavour] (e.g. debian:6.12, debian:6.12/rt) or PATH[,MODULES_DIR]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    interrupt_on_termination()
    try:
        result: int = args.func(args, rest)
        return result
    except KeyboardInterrupt as exc:
        print(f"memhp: interrupted{f' ({exc})' if str(exc) else ''}", file=sys.stderr)
        return 130
    except MemhpError as exc:
        return _error_exit(exc)
    except Exception:  # memhp's own bug: its traceback, and never the kernel's exit status
        traceback.print_exc()
        print(
            "memhp: internal error (a bug in memhp, not a verdict on the kernel): please "
            "report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INFRA


def _error_exit(exc: MemhpError) -> int:
    """One line for memhp's own errors, the details infrastructure and kernel errors carry,
    and the exit status of their family."""
    print(f"memhp: error: {exc}", file=sys.stderr)
    if isinstance(exc, InfrastructureError) and exc.details():
        print(exc.details(), file=sys.stderr)
    elif isinstance(exc, KernelFailure) and exc.console_tail:
        print(exc.console_tail, file=sys.stderr)
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_KERNEL if isinstance(exc, (KernelFailure, BuildError)) else EXIT_INFRA


class _Parser(argparse.ArgumentParser):
    """argparse's refusals in one line (its usage text is what --help is for); subcommands'
    parsers are of this class too (add_subparsers makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="memhp",
        description="Test Linux memory hotplug on real QEMU guests: hot-add and remove memory "
        "devices over QMP, online/offline blocks over SSH, check page flags.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    img = sub.add_parser("image", help="build guest images").add_subparsers(
        dest="image_command", required=True, metavar="ACTION"
    )
    build = img.add_parser("build", help="build (or reuse) the image for a kernel spec")
    build.add_argument(
        "--kernel",
        action="append",
        required=True,
        metavar="SPEC",
        help=KERNEL_HELP + "; repeatable",
    )
    _arch_option(build, multiple=False)
    _lock_options(build)
    build.set_defaults(func=_image_build)
    lock = img.add_parser(
        "lock",
        help="pin kernel and QEMU specs to exact packages in a lock file",
        description="Build (or reuse) the images of the given specs and resolve the Debian "
        "QEMU builds, and write the exact Debian packages and SHA256s they were made of to "
        "the lock file, so that later runs with --locked use the same kernel, userspace and "
        "QEMU.",
    )
    lock.add_argument(
        "--kernel",
        action="append",
        metavar="SPEC",
        help="debian:X.Y[/flavour]; repeatable (default: each arch's matrix)",
    )
    lock.add_argument(
        "--arch",
        action="append",
        choices=list(ARCHES),
        help=f"guest arch; repeatable (default: {' '.join(preflight.DEFAULT_ARCHES)})",
    )
    lock.add_argument(
        "--lock",
        type=Path,
        default=lockfile.DEFAULT_PATH,
        metavar="FILE",
        help=f"the lock file to write or update (default {lockfile.DEFAULT_PATH})",
    )
    _qemu_option(lock, multiple=True)
    lock.set_defaults(func=_image_lock)

    run = sub.add_parser(
        "run",
        help="run the scenarios (any further arguments go to pytest)",
        description="Run the hotplug scenarios in testcases/ with pytest. Arguments memhp does "
        "not know go to pytest, e.g. -k dimm, -x, --junitxml=FILE.",
    )
    run.add_argument(
        "--kernel",
        action="append",
        metavar="SPEC",
        help=f"{KERNEL_HELP}; repeatable (default: each arch's Debian matrix, "
        f"{preflight.matrix_help()})",
    )
    _arch_option(run, multiple=True)
    run.add_argument(
        "--accel",
        choices=ACCELS,
        help="accelerator (default: $MEMHP_ACCEL or auto: KVM only where it works)",
    )
    _qemu_option(run, multiple=True)
    run.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an expectation (see harness/hotplug/expectations.py)",
    )
    _lock_options(run)
    _workers_option(run)
    run.add_argument(
        "--repeat",
        type=workers.at_least(0),
        default=0,
        metavar="N",
        help="run each failing scenario N more times on fresh guests: the reports say "
        "whether it failed every time or some of the times (flaky), with the counts",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write DIR/junit.xml, DIR/kcidb.json (KCIDB v5.3), DIR/report.html "
        "with page-flag maps (DIR/maps/*.png)",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="run the K-th of N balanced parts (a CI job matrix; merge with memhp report merge)",
    )
    run.add_argument(
        "--durations-from",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="earlier results directories whose durations balance --shard; repeatable",
    )
    _submit_option(run)
    run.set_defaults(func=_run)

    rep = sub.add_parser("report", help="merge and compare result directories").add_subparsers(
        dest="report_command", required=True, metavar="ACTION"
    )
    mg = rep.add_parser(
        "merge",
        help="one KCIDB, JUnit and HTML report from several result directories",
        description="Merge the result directories of shards (or of several nights, arches, "
        "kernels) into one. A scenario run found twice (same node id) counts once: the later.",
    )
    mg.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    mg.add_argument("--out", type=Path, required=True, metavar="DIR")
    _submit_option(mg)
    mg.set_defaults(func=_report_merge)
    cp = rep.add_parser(
        "compare",
        help="which scenarios flipped between two runs (exit 1 on a regression or flaky one)",
        description="Compare two result directories per target and scenario: regressions "
        "(a FAIL where BASE had none), flaky ones apart (a FAIL that passed on a rerun, "
        "memhp run --repeat), fixes (FAIL -> PASS), infrastructure errors apart, new "
        "and vanished scenarios. Exit status 1 when there is a regression or a flaky one.",
    )
    cp.add_argument("base", type=Path, metavar="BASE")
    cp.add_argument("new", type=Path, metavar="NEW")
    cp.add_argument("--html", type=Path, metavar="FILE", help="also write the comparison page")
    cp.set_defaults(func=_report_compare)

    rp = sub.add_parser(
        "repro",
        help="the standalone script that reproduces a failing scenario",
        description="memhp run --report DIR writes, next to every FAIL, a script that "
        "reproduces it without memhp (bash, ssh and the same QEMU: boot, the QMP commands "
        "in order, the guest commands, the failing check in shell; exit 1 when it "
        "reproduces, 0 when it does not). This finds it: the failures of DIR, or the one "
        "whose scenario (or node id) contains SCENARIO.",
    )
    rp.add_argument("dir", type=Path, metavar="DIR", help="a results directory (--report)")
    rp.add_argument("scenario", nargs="?", metavar="SCENARIO")
    rp.add_argument("--show", action="store_true", help="print the script itself")
    rp.set_defaults(func=_repro)

    series = sub.add_parser("series", help="verify a patch series").add_subparsers(
        dest="series_command", required=True, metavar="ACTION"
    )
    sv = series.add_parser(
        "verify",
        help="apply an mbox in memhp's worktree, build, boot, run; per patch",
        description="Apply a posted series (git format-patch / b4 mbox) with git am -3 in "
        "memhp's own worktree of TREE (your checkout, branch and index are not "
        "touched), build it, boot it, run the scenarios, and report per patch: "
        "applied / built / booted / tested.",
    )
    _tree_option(sv)
    sv.add_argument("--mbox", required=True, type=Path, help="the series as an mbox")
    sv.add_argument(
        "--base",
        metavar="REV",
        help="apply on REV (default: the mbox's base-commit:, else TREE's HEAD)",
    )
    _arch_option(sv, multiple=True, default=SERIES_ARCHES)
    sv.add_argument(
        "--each-commit",
        action="store_true",
        help="build and test after every patch, not only the whole series",
    )
    _orchestrated_options(sv)
    sv.set_defaults(func=_series_verify)

    bi = sub.add_parser(
        "bisect",
        help="find the commit that broke a scenario (git bisect run)",
        description="Check that BAD fails and GOOD passes, then git bisect run in memhp's "
        "worktree of TREE: build failures and infrastructure failures skip "
        "(125), a scenario failure is bad, all repeats passing is good. Confirms "
        "the culprit fails and its parent passes. Your checkout is not touched.",
    )
    _tree_option(bi)
    bi.add_argument("--good", required=True, metavar="REV", help="a commit that passes")
    bi.add_argument("--bad", required=True, metavar="REV", help="a commit that fails")
    bi.add_argument(
        "--arch", default="x86_64", choices=list(ARCHES), help="guest arch (default x86_64)"
    )
    bi.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each step N times: bad on any failure, good only if all pass",
    )
    _orchestrated_options(bi)
    bi.set_defaults(func=_bisect)

    sc = sub.add_parser(
        "selfcheck",
        help="measure what the suite catches: one-line regressions built and run",
        description="Apply each of memhp's one-line hotplug regressions (a corpus for Linux "
        "6.12) to a copy of TREE, build it incrementally, run the scenarios (up to the first "
        "that fails, unless --every-catcher), and print which scenarios caught each mutant "
        "and the catch rate. The unmutated kernel runs first "
        "and must pass. Exit status 0 when every mutant built, changed the kernel and was caught.",
    )
    sc.add_argument("--tree", required=True, type=Path, help="a Linux 6.12 source tree")
    _arch_option(sc, multiple=False)
    sc.add_argument("--only", metavar="NAME", help="the mutants whose name contains NAME")
    sc.add_argument(
        "--every-catcher",
        action="store_true",
        help="run every scenario on each mutant (default: stop at the first that catches it)",
    )
    _qemu_option(sc, multiple=False)
    _workers_option(sc)
    sc.add_argument("--out", type=Path, metavar="DIR", help="results (default ./memhp-out/)")
    sc.set_defaults(func=_selfcheck)

    step = sub.add_parser("_bisect-step")  # what git bisect run calls; not for people
    step.add_argument("config")
    step.set_defaults(func=lambda a, _: bisect_step_main(a.config))

    kernel = sub.add_parser("kernel", help="build kernels from source").add_subparsers(
        dest="kernel_command", required=True, metavar="ACTION"
    )
    kb = kernel.add_parser(
        "build",
        help="configure (kconfigs/ fragments) and build a kernel tree",
        description="Configure TREE with a base config plus kconfigs/ fragments (the kernel's "
        "merge_config.sh + olddefconfig), check every requested option survived, "
        "build out of tree (cross for ppc64le, ccache when present) and install "
        "the modules. Prints the kernel spec to use: build:DIR.",
    )
    kb.add_argument("--tree", required=True, type=Path, help="kernel source tree")
    _arch_option(kb, multiple=False)
    kb.add_argument(
        "--kconfig",
        action="append",
        type=Path,
        metavar="FRAG",
        help="fragment(s) instead of kconfigs/{hotplug,guest,ARCH}.config",
    )
    _kbuild_base_option(kb)
    kb.add_argument("--out", type=Path, help="build directory (default: in memhp's cache)")
    kb.add_argument("-j", "--jobs", type=int, help="parallel jobs (default: all CPUs)")
    kb.add_argument(
        "--debug",
        action="store_true",
        help="add kconfigs/debug.config (DEBUG_VM, DEBUG_VM_PGFLAGS, DEBUG_PAGEALLOC, ...): "
        "memmap and page-type misuse becomes a WARNING or BUG the scenarios fail on",
    )
    kb.set_defaults(func=_kernel_build)

    shell = sub.add_parser("shell", help="boot a guest and open an SSH shell in it")
    shell.add_argument("--kernel", required=True, metavar="SPEC", help=KERNEL_HELP)
    _arch_option(shell, multiple=False)
    shell.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="ARG",
        help="extra kernel command-line argument; repeatable",
    )
    _accel_option(shell)
    shell.set_defaults(func=_shell)
    return p


def _kbuild_base_option(p: argparse.ArgumentParser, flag: str = "--base") -> None:
    p.add_argument(
        flag,
        dest="kbuild_base",
        metavar="defconfig|tinyconfig|FILE",
        help="base config under the kconfigs/ fragments: the arch's (guest) "
        "defconfig, tinyconfig, or a .config file (default: tinyconfig; "
        "ppc64le: defconfig)",
    )


def _submit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--submit",
        action="store_true",
        help="submit kcidb.json to KernelCI (KCIDB_REST, or kcidb-submit with KCIDB_PROJECT "
        "and KCIDB_TOPIC)",
    )


def _lock_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--locked",
        action="store_const",
        const=lockfile.DEFAULT_PATH,
        dest="lock",
        help=f"use the packages pinned in {lockfile.DEFAULT_PATH} (memhp image lock)",
    )
    g.add_argument("--lock", type=Path, metavar="FILE", help="like --locked, with FILE")


def _tree_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", required=True, type=Path, help="the kernel git repository")


def _orchestrated_options(p: argparse.ArgumentParser) -> None:
    """What series verify and bisect share besides the tree: scenarios, build, output."""
    p.add_argument(
        "-k",
        dest="select",
        metavar="EXPR",
        help="scenarios to run (pytest -k), e.g. test_dimm_online_movable (default: all)",
    )
    _kbuild_base_option(p, "--kbuild-base")
    _accel_option(p)
    _workers_option(p)
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="results and reports (default: ./memhp-out/<command>-<time>)",
    )


def _workers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--workers",
        type=workers.positive,
        metavar="N",
        help="scenarios at a time (default: one per core while memory lasts; 1: one at a time)",
    )


def _workers(args: argparse.Namespace) -> workers.Workers:
    """How many scenarios at a time (said by the run once its input is checked)."""
    return workers.choose(args.workers)


def _out_dir(args: argparse.Namespace, command: str) -> Path:
    return Path(args.out or Path("memhp-out") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")


def _arch_option(
    p: argparse.ArgumentParser, multiple: bool, default: tuple[str, ...] = preflight.DEFAULT_ARCHES
) -> None:
    """--arch; repeatable ones default to ``default`` (None on the namespace)."""
    names = ", ".join(ARCHES)
    if multiple:
        p.add_argument(
            "--arch",
            action="append",
            choices=list(ARCHES),
            help=f"guest arch ({names}); repeatable (default {' '.join(default)})",
        )
    else:
        p.add_argument(
            "--arch",
            default="x86_64",
            choices=list(ARCHES),
            help=f"guest arch ({names}; default x86_64)",
        )


def _accel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accel",
        choices=ACCELS,
        help="accelerator (default: $MEMHP_ACCEL or auto: KVM only where it works)",
    )
    _qemu_option(p, multiple=False)


def _qemu_option(p: argparse.ArgumentParser, multiple: bool) -> None:
    if multiple:
        p.add_argument(
            "--qemu",
            action="append",
            metavar="SPEC",
            help=f"QEMU to run the guests: {builds.SPEC_HELP}; repeatable, each crossed with "
            "every kernel (default: the host's, and the default matrix adds QEMU 10.0 on the "
            "newest x86-64 kernel line)",
        )
    else:
        p.add_argument(
            "--qemu",
            metavar="SPEC",
            help=f"QEMU to run the guests: {builds.SPEC_HELP} (default: host; s390x: "
            "debian:10.0, the first with memory devices there)",
        )


def _image_build(args: argparse.Namespace, _: list[str]) -> int:
    plan = preflight.check(
        [args.arch], args.kernel, accel="tcg", expects=[], lock=args.lock, boots=False
    )
    for target in plan.targets:
        pinned = plan.lock.pinned(target.arch.name, target.kernel) if plan.lock else None
        image = images.build(target.kernel, target.arch, pinned=pinned)
        print(
            f"{target.kernel} ({target.arch.name}): {image.kernel_package}, release "
            f"{image.release}\n  {image.path}"
        )
    return 0


def _image_lock(args: argparse.Namespace, _: list[str]) -> int:
    plan = preflight.check(args.arch, args.kernel, accel="tcg", expects=[], qemus=args.qemu)
    lock = lockfile.load(args.lock, missing_ok=True)
    for (arch, spec), build in plan.qemus.items():
        if build.packages:  # a Debian build; the host's and a path are their own pins
            lock.pin_qemu(arch, spec, build.identity, build.packages)
            print(f"{arch} QEMU {spec}: {build.identity}")
    for target in plan.targets:
        if not target.kernel.startswith("debian:"):
            raise UsageError(
                f"{target.kernel}: only debian: specs can be locked (a local kernel is its own pin)"
            )
        image = images.build(target.kernel, target.arch)
        lock.pin(
            target.arch.name,
            target.kernel,
            release=image.release,
            kernel=image.kernel_debs,
            userspace=image.userspace_debs,
        )
        print(f"{target.arch.name} {target.kernel}: {image.kernel_package}")
    lock.save()
    print(f"wrote {args.lock}: {len(lock.entries)} target(s); run with --locked")
    return 0


def _kernel_build(args: argparse.Namespace, _: list[str]) -> int:
    from harness import kbuild

    out = kbuild.build(
        args.tree,
        get_arch(args.arch),
        fragments=args.kconfig,
        base=args.kbuild_base,
        out=args.out,
        jobs=args.jobs,
        debug=args.debug,
    )
    print(f"kernel spec: build:{out}")
    return 0


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    if not TESTCASES.is_dir():
        raise HarnessError(f"memhp's scenarios are missing ({TESTCASES}): reinstall memhp")
    chosen = _workers(args)
    selection = Selection(
        kernels=tuple(args.kernel or ()),
        arches=tuple(args.arch or ()),
        qemus=tuple(args.qemu or ()),
        accel=args.accel,
        expects=tuple(args.expect),
        lock=args.lock,
        results=args.report,
        shard=args.shard,
        durations_from=tuple(args.durations_from),
        workers=chosen.count,
        workers_said=chosen.describe(),
        repeat=args.repeat,
    )
    if args.submit:
        if not args.report:
            raise UsageError("--submit needs --report DIR (the kcidb.json to submit)")
        submit.check_configured()  # before any guest boots
    argv = [*selection.pytest_args(), *rest]
    check_pytest_args(argv)
    status = int(pytest.main(argv))
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageError(f"no scenario matches the selection ({' '.join(rest) or 'none'})")
    if status == pytest.ExitCode.USAGE_ERROR:  # refused after the check above: said above
        return EXIT_USAGE
    if args.submit and (args.report / "kcidb.json").is_file():
        print(f"memhp: {submit.submit(args.report / 'kcidb.json')}")
    return status


def _selfcheck(args: argparse.Namespace, _: list[str]) -> int:
    from harness.workflows import selfcheck

    out = _out_dir(args, "selfcheck").resolve()
    result = selfcheck.run(
        args.tree,
        get_arch(args.arch),
        out,
        only=args.only,
        every_catcher=args.every_catcher,
        qemu=args.qemu,
        workers=_workers(args).count,
    )
    print(result.table())
    print(f"results: {out}")
    clean = not result.baseline_failures and not result.corpus_errors and result.rate == 1.0
    return 0 if clean else EXIT_KERNEL


def _report_merge(args: argparse.Namespace, _: list[str]) -> int:
    if args.submit:
        submit.check_configured()
    results = merge.merge(args.dirs, args.out)
    print(
        f"memhp: {len(results)} results from {len(args.dirs)} directories in {args.out}: "
        f"kcidb.json, junit.xml, report.html"
    )
    if args.submit:
        print(f"memhp: {submit.submit(args.out / 'kcidb.json')}")
    return 0


def _report_compare(args: argparse.Namespace, _: list[str]) -> int:
    for d in (args.base, args.new):
        if not (d / RECORDS).is_dir():
            raise UsageError(f"{d} is not a memhp results directory (no {RECORDS}/)")
    result = compare.compare(
        load_results(args.base),
        load_results(args.new),
        load_runs(args.base),
        load_runs(args.new),
    )
    print(result.text())
    if args.html:
        args.html.write_text(result.html(str(args.base), str(args.new)))
        print(f"memhp: comparison page {args.html}")
    return EXIT_KERNEL if result.regressions or result.flaky else 0


def _repro(args: argparse.Namespace, _: list[str]) -> int:
    if not (args.dir / RECORDS).is_dir():
        raise UsageError(f"{args.dir} is not a memhp results directory (no {RECORDS}/)")
    failed = [r for r in load_results(args.dir) if r.repro]
    chosen = [r for r in failed if not args.scenario or args.scenario in r.nodeid]
    if not chosen:
        what = f"matching {args.scenario!r} " if args.scenario else ""
        raise UsageError(
            f"no failure {what}with a reproducer in {args.dir} "
            f"(failures: {', '.join(r.scenario for r in failed) or 'none'})"
        )
    if args.show and len(chosen) == 1:
        print((args.dir / chosen[0].repro).read_text(), end="")
        return 0
    for r in chosen:
        print(f"{r.scenario} on {r.arch} {r.kernel}: {r.message}\n  bash {args.dir / r.repro}")
    return 0


def _series_verify(args: argparse.Namespace, _: list[str]) -> int:
    from harness.workflows import series

    out = _out_dir(args, "series")
    result = series.verify(
        args.tree,
        args.mbox,
        base=args.base,
        arches=args.arch or list(SERIES_ARCHES),
        each_commit=args.each_commit,
        select=args.select,
        kbuild_base=args.kbuild_base,
        accel=args.accel,
        qemu=args.qemu,
        workers=_workers(args).count,
        out=out,
    )
    print(result.table())
    if result.out.is_dir():
        print(f"reports (KCIDB, HTML, JUnit per tested patch and arch): {result.out}")
    return 0 if result.ok else 1


def _bisect(args: argparse.Namespace, _: list[str]) -> int:
    from harness.workflows import bisection as bisect

    out = _out_dir(args, "bisect").resolve()
    cfg = bisect.StepConfig(
        tree=str(args.tree.resolve()),
        arch=args.arch,
        select=args.select,
        repeat=max(1, args.repeat),
        kbuild_base=args.kbuild_base,
        out=str(out),
        accel=args.accel,
        qemu=args.qemu,
        workers=_workers(args).count,
    )
    culprit = bisect.bisect(cfg, args.good, args.bad)
    print(
        f"first bad commit: {culprit.commit[:12]} {culprit.subject}\n  {culprit.confirmed}\n"
        f"  step results: {out}"
    )
    return 0


def bisect_step_main(config: str) -> int:
    from harness.workflows import bisection as bisect

    return bisect.step_main(config)


def _shell(args: argparse.Namespace, _: list[str]) -> int:
    arch = get_arch(args.arch)
    qemu = builds.resolve(args.qemu or arch.default_qemu, arch)  # before anything is built
    image = images.build(args.kernel, arch)
    config = MachineConfig(
        arch=arch,
        image=image,
        cmdline=tuple(args.append),
        accel=choose_accel(arch, args.accel),
        qemu=qemu,
    )
    with QemuMachine(config) as machine, tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known_hosts"
        known.write_text(f"[127.0.0.1]:{machine.port} {image.host_key}\n")
        ssh = [
            "ssh",
            "-i",
            str(image.client_key),
            "-p",
            str(machine.port),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "root@127.0.0.1",
        ]
        print(
            f"memhp: {image.kernel_package} up in {machine.boot_seconds:.1f} s; "
            f"same guest from another terminal: {shlex.join(ssh)}\n"
            "memhp: leaving the shell ends the VM",
            file=sys.stderr,
        )
        return subprocess.run(ssh).returncode


if __name__ == "__main__":
    sys.exit(main())
