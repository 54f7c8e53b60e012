"""Kernel modules in the initramfs: the scenario modules and their dependency closure,
decompressed, in load order (modules.dep from the kernel package, or depmod)."""

from __future__ import annotations

import lzma
import subprocess
from pathlib import Path

from harness.errors import UsageError
from harness.images.rootfs import recipe_lines
from harness.images.tools import host_tool

MODULE_DIR = "lib/modules/memhp"  # flat: the init insmods in the order of etc/memhp/modules


def install_modules(modules_dir: Path, root: Path) -> list[str]:
    """Copy the wanted modules and their dependencies, decompressed, in load order.

    Writes etc/memhp/modules.early (loaded before sshd) and etc/memhp/modules (after).
    """
    deps = _modules_dep(modules_dir)
    by_name = {_mod_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path not in order:
            for dep in deps[path]:
                visit(dep)
            order.append(path)

    lists: dict[bool, list[str]] = {True: [], False: []}
    for line in recipe_lines("modules.txt"):
        path = by_name.get(line[0].replace("-", "_"))
        if path is None:  # built in, or not in this kernel at all: nothing to load
            continue
        before = len(order)
        visit(path)
        lists["early" in line[1:]] += [_mod_name(p) + ".ko" for p in order[before:]]
    dest = root / MODULE_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for rel in order:
        (dest / (_mod_name(rel) + ".ko")).write_bytes(_read_module(modules_dir / rel))
    etc = root / "etc/memhp"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "modules.early").write_text("".join(f"{m}\n" for m in lists[True]))
    (etc / "modules").write_text("".join(f"{m}\n" for m in lists[False]))
    return lists[True] + lists[False]


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return data


def _modules_dep(modules_dir: Path) -> dict[str, list[str]]:
    dep_file = modules_dir / "modules.dep"
    deps: dict[str, list[str]] = {}
    for line in dep_file.read_text().splitlines():
        mod, _, rest = line.partition(":")
        # modules.dep lists the full dependency closure, nearest first; load in reverse.
        deps[mod] = list(reversed(rest.split()))
    return deps


def depmod(modules_dir: Path) -> None:
    """Debian ships no modules.dep (its postinst makes one): run depmod on the unpacked tree."""
    parent = modules_dir.parent  # .../lib/modules or .../usr/lib/modules
    base = parent.parent.parent
    if parent.parent.parent.name == "usr":  # depmod -b wants BASE/lib/modules
        base = base.parent
        (base / "lib").mkdir(exist_ok=True)
        if not (base / "lib/modules").exists():
            (base / "lib/modules").symlink_to(parent)
    proc = subprocess.run(
        [host_tool("depmod"), "-b", str(base), modules_dir.name], capture_output=True, text=True
    )
    if proc.returncode != 0 or not (modules_dir / "modules.dep").exists():
        raise UsageError(
            f"depmod -b {base} {modules_dir.name} failed: "
            f"{proc.stderr.strip() or 'no modules.dep'} (is kmod installed?)"
        )


def _mod_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")
