"""Build a kernel tree for hotplug testing: configure with kconfigs/ fragments, check the
result, build out of tree (natively or cross), install modules.

The build directory doubles as the kernel spec ``build:DIR``: it holds .config, the kernel
image and ``mod/lib/modules/<release>`` (from ``make modules_install``, so depmod ran).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness import cache
from harness.arch import Arch
from harness.errors import BuildError, UsageError
from harness.kconfig import KernelConfig
from harness.kconfig import load as load_config
from harness.progress import progress
from harness.resources import KCONFIGS

BASES = ("defconfig", "tinyconfig")
# What every build runs besides the compiler (the kernel's own build dependencies).
BUILD_TOOLS = ("make", "flex", "bison", "bc", "perl")


class KconfigError(UsageError):
    """A fragment asked for an option this tree's Kconfig will not give (named, with the
    ``depends on`` that dropped it): the fragment's fault, or a commit too old for it."""


def check_tools(arch: Arch) -> None:
    """Everything a build of ``arch`` needs on the host, checked before anything runs;
    UsageError naming the missing tool and the package that has it."""
    kb = KBUILD[arch.name]
    cross = _cross(kb)
    for tool in (*BUILD_TOOLS, f"{cross}gcc"):
        if shutil.which(tool) is None:
            package = f"gcc-{cross.rstrip('-')}" if tool.startswith(cross) and cross else tool
            raise UsageError(
                f"{tool} not found: building {arch.name} kernels needs it "
                f"(install {package}; ./setup.sh --kbuild does)"
            )


@dataclass(frozen=True)
class KbuildArch:
    """How to build for an arch: make's ARCH, the cross prefix, targets, image path."""

    make_arch: str
    cross_prefix: str  # used when the host is another arch
    image: str  # relative to the build dir
    image_target: str
    defconfig: str
    fragments: tuple[str, ...]  # kconfigs/ files on top of hotplug.config and guest.config
    # The base config when none is given: the smallest that boots every scenario with the
    # fragments on top (x86: tinyconfig builds in a third of x86_64_defconfig's time).
    default_base: str
    machine: str  # `uname -m` of a host that builds it natively


KBUILD = {
    "x86_64": KbuildArch(
        "x86",
        "x86_64-linux-gnu-",
        "arch/x86/boot/bzImage",
        "bzImage",
        "x86_64_defconfig",
        ("nvdimm.config", "x86_64.config"),
        "tinyconfig",
        "x86_64",
    ),
    # ppc64le_guest_defconfig: pseries KVM/QEMU guest options on top of ppc64le_defconfig.
    "ppc64le": KbuildArch(
        "powerpc",
        "powerpc64le-linux-gnu-",
        "vmlinux",
        "vmlinux",
        "ppc64le_guest_defconfig",
        ("nvdimm.config", "ppc64le.config"),
        "defconfig",
        "ppc64le",
    ),
    # tinyconfig: defconfig builds every SoC platform arm64 supports.
    "arm64": KbuildArch(
        "arm64",
        "aarch64-linux-gnu-",
        "arch/arm64/boot/Image",
        "Image",
        "defconfig",
        ("nvdimm.config", "arm64.config"),
        "tinyconfig",
        "aarch64",
    ),
    "s390x": KbuildArch(
        "s390",
        "s390x-linux-gnu-",
        "arch/s390/boot/bzImage",
        "bzImage",
        "defconfig",
        ("s390x.config",),  # no NVDIMM: s390 has no HAS_IOMEM without PCI
        "tinyconfig",
        "s390x",
    ),
}


@dataclass(frozen=True)
class Requested:
    """One line of a fragment: the option, the value asked for, the reason above it."""

    option: str
    value: str  # "y", "m", "n", a number or a string
    reason: str
    fragment: str


@dataclass(frozen=True)
class Dropped:
    requested: Requested
    actual: str | None  # None: absent from .config
    depends: str  # the option's "depends on", from its Kconfig, if found

    def __str__(self) -> str:
        got = "absent" if self.actual is None else f"={self.actual}"
        why = f" (depends on {self.depends})" if self.depends else ""
        return (
            f"CONFIG_{self.requested.option}={self.requested.value} asked by "
            f"{self.requested.fragment} is {got} after olddefconfig{why}"
        )


def parse_fragment(path: Path) -> list[Requested]:
    """Options of a fragment; '# CONFIG_X is not set' asks for n. Comments above a line
    are its reason."""
    out, reason = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        m = re.fullmatch(r"CONFIG_(\w+)=(.*)", line) or re.fullmatch(
            r"# CONFIG_(\w+) is not set()", line
        )
        if m:
            out.append(Requested(m.group(1), m.group(2) or "n", reason, path.name))
        elif line.startswith("#"):
            reason = line.lstrip("# ")
        elif not line:
            reason = ""
    return out


def dropped(requests: list[Requested], config: KernelConfig, tree: Path) -> list[Dropped]:
    """Requests the final .config does not honour (a built-in ask satisfied by =y too)."""
    out = []
    for req in requests:
        actual = config.get(req.option)
        ok = (
            actual == req.value
            or (req.value == "n" and actual is None)
            or (req.value == "m" and actual == "y")
        )
        if not ok:
            out.append(Dropped(req, actual, kconfig_depends(tree, req.option)))
    return out


def kconfig_depends(tree: Path, option: str) -> str:
    """The 'depends on' lines of ``config OPTION`` in the tree's Kconfig files."""
    proc = subprocess.run(
        ["grep", "-rlx", "--include=Kconfig*", f"config {option}", str(tree)],
        capture_output=True,
        text=True,
    )
    deps: list[str] = []
    for path in proc.stdout.split():
        lines = Path(path).read_text(errors="replace").splitlines()
        start = lines.index(f"config {option}") + 1
        for line in lines[start:]:
            text = line.strip()
            if re.match(r"(menu)?config |endmenu|menu |if |endif|choice|source ", text):
                break
            if text.startswith("depends on"):
                deps.append(text.removeprefix("depends on").strip())
    return " && ".join(deps)


def check_tree(tree: Path) -> None:
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise UsageError(f"{tree} is not a kernel source tree (no Makefile/Kconfig)")


def default_build_dir(tree: Path, arch: Arch, *, debug: bool = False) -> Path:
    key = hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:12]
    flavour = "-debug" if debug else ""
    return cache.path("builds", f"{tree.resolve().name}-{key}-{arch.name}{flavour}")


def build(
    tree: Path,
    arch: Arch,
    *,
    fragments: list[Path] | None = None,
    base: str | None = None,
    out: Path | None = None,
    jobs: int | None = None,
    debug: bool = False,
) -> Path:
    """Configure and build ``tree`` for ``arch`` into ``out``; return ``out`` (a build: spec).
    ``debug`` adds kconfigs/debug.config (and debug-ARCH.config where there is one), into a
    build directory of its own.

    :raises UsageError: not a kernel tree, a missing build tool or fragment (KconfigError:
        an option the tree will not give).
    :raises BuildError: the tree did not configure or compile."""
    tree = tree.resolve()
    check_tree(tree)
    check_tools(arch)
    kb = KBUILD[arch.name]
    out = (out or default_build_dir(tree, arch, debug=debug)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    frags = fragments or [
        KCONFIGS / "hotplug.config",
        KCONFIGS / "guest.config",
        *(KCONFIGS / f for f in kb.fragments),
    ]
    if debug:
        frags += [
            f
            for f in (KCONFIGS / "debug.config", KCONFIGS / f"debug-{arch.name}.config")
            if f.is_file()
        ]
    for frag in frags:
        if not frag.is_file():
            raise UsageError(f"kconfig fragment {frag} does not exist")
    make = _make_command(tree, out, arch, kb, jobs)
    base = base or kb.default_base
    log = out / "build.log"
    with log.open("w") as logf:
        _configure_once(make, tree, out, kb, base, frags, logf)
        requests = [r for f in frags for r in parse_fragment(f)]
        lost = dropped(requests, load_config(out / ".config"), tree)
        if lost:
            raise KconfigError("kconfig: " + "; ".join(map(str, lost)))
        with progress(f"kbuild: {arch.name} {kb.image_target} + modules in {out} (log: {log})"):
            _run([*make, kb.image_target, "modules"], logf, log)
        shutil.rmtree(out / "mod", ignore_errors=True)
        _run([*make, "INSTALL_MOD_PATH=" + str(out / "mod"), "modules_install"], logf, log)
    return out


def _configure_once(
    make: list[str],
    tree: Path,
    out: Path,
    kb: KbuildArch,
    base: str,
    frags: list[Path],
    logf: IO[str],
) -> None:
    """Merge base + fragments only when they changed since the last build in ``out``;
    otherwise olddefconfig alone brings .config up to the tree (e.g. a bisect step that
    changed a Kconfig file), and an unchanged tree rebuilds in seconds."""
    stamp = out / ".memhp-config-inputs"
    h = hashlib.sha256(base.encode())
    for f in ([] if base in BASES else [Path(base)]) + frags:
        h.update(f.read_bytes() if f.is_file() else b"")
    if (out / ".config").is_file() and stamp.is_file() and stamp.read_text() == h.hexdigest():
        _run([*make, "olddefconfig"], logf, out / "build.log")
        return
    stamp.unlink(missing_ok=True)
    configure(make, tree, out, kb, base, frags, logf)
    stamp.write_text(h.hexdigest())


def configure(
    make: list[str],
    tree: Path,
    out: Path,
    kb: KbuildArch,
    base: str,
    frags: list[Path],
    logf: IO[str],
) -> None:
    """Base config, fragments merged with the kernel's merge_config.sh, olddefconfig."""
    log = out / "build.log"
    with progress(f"kbuild: configure ({base} + {', '.join(f.name for f in frags)})"):
        if base in BASES:
            _run([*make, kb.defconfig if base == "defconfig" else base], logf, log)
        else:
            src = Path(base)
            if not src.is_file():
                raise UsageError(f"--base {base}: neither {'/'.join(BASES)} nor a config file")
            shutil.copyfile(src, out / ".config")
        merge = tree / "scripts/kconfig/merge_config.sh"
        env = {**os.environ, "ARCH": kb.make_arch}
        cross = _cross(kb)
        if cross:
            env["CROSS_COMPILE"] = cross
        _run(
            [str(merge), "-m", "-O", str(out), str(out / ".config"), *map(str, frags)],
            logf,
            log,
            cwd=tree,
            env=env,
        )
        _run([*make, "olddefconfig"], logf, log)


def _make_command(tree: Path, out: Path, arch: Arch, kb: KbuildArch, jobs: int | None) -> list[str]:
    cmd = [
        "make",
        "-C",
        str(tree),
        f"O={out}",
        f"ARCH={kb.make_arch}",
        f"-j{jobs or os.cpu_count() or 1}",
    ]
    cross = _cross(kb)
    if cross:
        cmd.append(f"CROSS_COMPILE={cross}")
    if shutil.which("ccache"):
        cmd.append(f"CC=ccache {cross}gcc")
    return cmd


def _cross(kb: KbuildArch) -> str:
    return "" if os.uname().machine == kb.machine else kb.cross_prefix


def _run(
    cmd: list[str],
    logf: IO[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a build step into the log; on failure say the first error line."""
    logf.write(f"$ {' '.join(cmd)}\n")
    logf.flush()
    start = time.monotonic()
    proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    logf.write(f"# exit {proc.returncode} after {time.monotonic() - start:.1f} s\n")
    logf.flush()
    if proc.returncode != 0:
        raise BuildError(
            f"{' '.join(cmd[:1] + cmd[-2:])} failed: {first_error(log)} (full log: {log})"
        )


def first_error(log: Path) -> str:
    """The first compiler/make error of a build log."""
    for line in log.read_text(errors="replace").splitlines():
        if re.search(r"\berror\b|\*\*\*", line, re.I) and not line.startswith("$"):
            return line.strip()
    return "no error line found"


def image_of(build_dir: Path, arch: Arch) -> tuple[Path, Path | None]:
    """Kernel image and modules dir of a finished build directory."""
    image = build_dir / KBUILD[arch.name].image
    if not image.is_file():
        raise UsageError(
            f"{build_dir} holds no {KBUILD[arch.name].image}: build it with "
            f"memhp kernel build --arch {arch.name}"
        )
    mods = sorted((build_dir / "mod/lib/modules").glob("*"))
    return image, (mods[0] if mods else None)
