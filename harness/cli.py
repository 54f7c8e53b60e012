"""The ``memhp`` command: build images, run the scenarios, get a shell in a guest."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import images
from harness.accel import choose_accel
from harness.arch import ARCHES, get_arch
from harness.errors import InfrastructureError, KernelFailure, MemhpError
from harness.machine import Machine, MachineConfig

TESTCASES = Path(__file__).resolve().parent.parent / "testcases"
KERNEL_HELP = "debian:X.Y[/flavour] (e.g. debian:6.12, debian:6.12/rt) or PATH[,MODULES_DIR]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        result: int = args.func(args, rest)
        return result
    except KeyboardInterrupt:
        print("memhp: interrupted", file=sys.stderr)
        return 130
    except MemhpError as exc:
        print(f"memhp: error: {exc}", file=sys.stderr)
        if isinstance(exc, InfrastructureError) and exc.details():
            print(exc.details(), file=sys.stderr)
        elif isinstance(exc, KernelFailure) and exc.console_tail:
            print(exc.console_tail, file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="memhp",
        description="Test Linux memory hotplug on real QEMU guests: hot-add and remove memory "
                    "devices over QMP, online/offline blocks over SSH, check page flags.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    img = sub.add_parser("image", help="build guest images").add_subparsers(
        dest="image_command", required=True, metavar="ACTION")
    build = img.add_parser("build", help="build (or reuse) the image for a kernel spec")
    build.add_argument("--kernel", action="append", required=True, metavar="SPEC",
                       help=KERNEL_HELP + "; repeatable")
    _arch_option(build, multiple=False)
    build.set_defaults(func=_image_build)

    run = sub.add_parser(
        "run", help="run the scenarios (any further arguments go to pytest)",
        description="Run the hotplug scenarios in testcases/ with pytest. Arguments memhp does "
                    "not know go to pytest, e.g. -k dimm, -n 2, -x, --junitxml=FILE.")
    run.add_argument("--kernel", action="append", metavar="SPEC",
                     help=f"{KERNEL_HELP}; repeatable (default: each arch's Debian matrix, "
                          "x86_64: debian:6.1 6.12 7.2, ppc64le: debian:6.1 6.12)")
    _arch_option(run, multiple=True)
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), help="accelerator (default auto)")
    run.add_argument("--expect", action="append", default=[], metavar="NAME=VALUE",
                     help="override an expectation (see harness/expectations.py)")
    run.set_defaults(func=_run)

    kernel = sub.add_parser("kernel", help="build kernels from source").add_subparsers(
        dest="kernel_command", required=True, metavar="ACTION")
    kb = kernel.add_parser(
        "build", help="configure (kconfigs/ fragments) and build a kernel tree",
        description="Configure TREE with a base config plus kconfigs/ fragments (the kernel's "
                    "merge_config.sh + olddefconfig), check every requested option survived, "
                    "build out of tree (cross for ppc64le, ccache when present) and install "
                    "the modules. Prints the kernel spec to use: build:DIR.")
    kb.add_argument("--tree", required=True, type=Path, help="kernel source tree")
    _arch_option(kb, multiple=False)
    kb.add_argument("--kconfig", action="append", type=Path, metavar="FRAG",
                    help="fragment(s) instead of kconfigs/{hotplug,guest,ARCH}.config")
    kb.add_argument("--base", default="defconfig",
                    help="defconfig (the arch's guest defconfig), tinyconfig, or a .config file")
    kb.add_argument("--out", type=Path, help="build directory (default: in memhp's cache)")
    kb.add_argument("-j", "--jobs", type=int, help="parallel jobs (default: all CPUs)")
    kb.set_defaults(func=_kernel_build)

    shell = sub.add_parser("shell", help="boot a guest and open an SSH shell in it")
    shell.add_argument("--kernel", required=True, metavar="SPEC", help=KERNEL_HELP)
    _arch_option(shell, multiple=False)
    shell.add_argument("--append", action="append", default=[], metavar="ARG",
                       help="extra kernel command-line argument; repeatable")
    shell.add_argument("--accel", choices=("auto", "kvm", "tcg"), help="accelerator")
    shell.set_defaults(func=_shell)
    return p


def _arch_option(p: argparse.ArgumentParser, multiple: bool) -> None:
    names = ", ".join(ARCHES)
    if multiple:
        p.add_argument("--arch", action="append", choices=list(ARCHES),
                       help=f"guest arch ({names}); repeatable (default x86_64)")
    else:
        p.add_argument("--arch", default="x86_64", choices=list(ARCHES),
                       help=f"guest arch ({names}; default x86_64)")


def _image_build(args: argparse.Namespace, _: list[str]) -> int:
    arch = get_arch(args.arch)
    for spec in args.kernel:
        image = images.build(spec, arch)
        print(f"{spec} ({arch.name}): {image.kernel_package}, release {image.release}\n"
              f"  {image.path}")
    return 0


def _kernel_build(args: argparse.Namespace, _: list[str]) -> int:
    from harness import kbuild

    out = kbuild.build(args.tree, get_arch(args.arch), fragments=args.kconfig, base=args.base,
                       out=args.out, jobs=args.jobs)
    print(f"kernel spec: build:{out}")
    return 0


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    if not TESTCASES.is_dir():
        raise MemhpError(f"{TESTCASES} not found: run memhp from its source checkout")
    pytest_args = [str(TESTCASES), "-p", "no:cacheprovider"]
    for spec in args.kernel or []:
        pytest_args += ["--memhp-kernel", spec]
    for arch in args.arch or ["x86_64"]:
        pytest_args += ["--memhp-arch", arch]
    if args.accel:
        pytest_args += ["--memhp-accel", args.accel]
    for expect in args.expect:
        pytest_args += ["--memhp-expect", expect]
    return int(pytest.main([*pytest_args, *rest]))


def _shell(args: argparse.Namespace, _: list[str]) -> int:
    arch = get_arch(args.arch)
    image = images.build(args.kernel, arch)
    config = MachineConfig(arch=arch, image=image, cmdline=tuple(args.append),
                           accel=choose_accel(arch, args.accel))
    with Machine(config) as machine, tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known_hosts"
        known.write_text(f"[127.0.0.1]:{machine.port} {image.host_key}\n")
        ssh = ["ssh", "-i", str(image.client_key), "-p", str(machine.port),
               "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
               "root@127.0.0.1"]
        print(f"memhp: {image.kernel_package} up in {machine.boot_seconds:.1f} s; "
              f"same guest from another terminal: {shlex.join(ssh)}\n"
              "memhp: leaving the shell ends the VM", file=sys.stderr)
        return subprocess.run(ssh).returncode


if __name__ == "__main__":
    sys.exit(main())
