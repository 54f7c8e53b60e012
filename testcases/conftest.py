"""Fixtures shared by the kernel-build scenarios (kbuild marker)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness import cache
from harness.images.apt import SUITES, AptCache, VersionKey

SOURCE = Path("/usr/src/linux-source-6.12.tar.xz")


@pytest.fixture(scope="session")
def kernel_tree() -> Path:
    if os.environ.get("MEMHP_KBUILD_TREE"):
        return Path(os.environ["MEMHP_KBUILD_TREE"])
    tree = cache.path("trees", "linux-source-6.12")
    if not (tree / "Makefile").exists():
        if not SOURCE.exists():
            pytest.fail(
                f"{SOURCE} missing: install linux-source-6.12 (./setup.sh --kbuild) "
                "or set MEMHP_KBUILD_TREE"
            )
        with tarfile.open(SOURCE) as tar:
            tar.extractall(tree.parent, filter="data")
    return tree


def debian_tree(line: str) -> Path:
    """Debian's linux-source-LINE (the newest build the archive gives, through memhp's
    private apt configuration), unpacked once into memhp's cache: a tree of a line the
    host does not have installed."""
    apt = AptCache(cache.path("apt", "amd64"), "amd64")  # Architecture: all
    name = f"linux-source-{line}"
    found = list(apt.find(lambda n: n == name, SUITES))
    if not found:
        pytest.fail(f"no {name} package in the indexes")
    pkg = max(found, key=lambda p: VersionKey(p.version))
    tree = cache.path("trees", f"{name}_{pkg.version}", name)
    if not (tree / "Makefile").exists():
        deb = apt.fetch_any(pkg)
        tarball = f"./usr/src/{name}.tar.xz"
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
        ).stdout
        unpacked = tree.parent / "deb"
        unpacked.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(unpacked), tarball], input=data, check=True)
        with tarfile.open(unpacked / tarball) as tar:
            tar.extractall(tree.parent, filter="data")
        (unpacked / tarball).unlink()
    return tree
