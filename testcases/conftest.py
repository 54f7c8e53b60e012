"""Fixtures shared by the kernel-build scenarios (kbuild marker)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from harness import cache

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
