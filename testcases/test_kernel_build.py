"""Kernels from source: configure a real tree with kconfigs/, build it, boot it in the
scenarios. Slow (a cold build is minutes to a quarter hour on 2 cores), so these carry the
``kbuild`` marker and run with their own command (README: nightly):

    .venv/bin/pytest -m kbuild testcases/test_kernel_build.py

The tree is $MEMHP_KBUILD_TREE, else Debian's linux-source-6.12 unpacked into memhp's cache
(the kernel_tree fixture in conftest.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness import kbuild
from harness.arch import PPC64LE, X86_64, Arch
from harness.errors import UsageError
from harness.verdict import Status
from harness.workflows.runner import run_scenarios

pytestmark = pytest.mark.kbuild


def _passes(arch: Arch, build_dir: Path, out: Path, *files: str) -> None:
    """Run scenario files against build:DIR in a child pytest (its own guest pool) and
    require that it checked something: no FAIL, ERROR or MISS, every skip with its reason,
    and in each file at least one scenario that passed."""
    run = run_scenarios(
        f"build:{build_dir}",
        arch.name,
        out,
        files=tuple(f.removeprefix("testcases/") for f in files),
    )
    print(run.summary())
    bad = [f"{r.scenario}: {r.status.value} {r.message}" for r in run.failures()]
    assert not bad, "\n".join(bad) + f"\n(log: {run.log})"
    unexplained = [r.scenario for r in run.results if r.status is Status.SKIP and not r.message]
    assert not unexplained, unexplained
    passed = Counter(
        Path(r.nodeid.split("::")[0]).name for r in run.results if r.status is Status.PASS
    )
    nothing = [f for f in files if not passed[Path(f).name]]
    assert not nothing, f"no scenario of {nothing} passed: {run.summary()}"


def test_kbuild_fragment_asking_for_what_the_arch_cannot_have_fails(
    kernel_tree: Path, tmp_path: Path
) -> None:
    """VIRTIO_MEM on ppc64le: configure stops and names the option and its dependency."""
    frag = tmp_path / "virtio-mem.config"
    frag.write_text("# virtio-mem on pseries (it cannot be)\nCONFIG_VIRTIO_MEM=y\n")

    with pytest.raises(UsageError) as exc:
        kbuild.build(kernel_tree, PPC64LE, fragments=[frag], out=tmp_path / "out")

    assert "CONFIG_VIRTIO_MEM=y" in str(exc.value)
    assert "depends on" in str(exc.value) and "X86_64" in str(exc.value)


@pytest.mark.parametrize(
    ("arch", "base"), [(X86_64, "tinyconfig"), (PPC64LE, "defconfig")], ids=["x86_64", "ppc64le"]
)
def test_kbuild_kernel_passes_dimm_and_nvdimm_scenarios(
    kernel_tree: Path, arch: Arch, base: str, tmp_path: Path
) -> None:
    """Build (incremental when done before) and run the DIMM and NVDIMM scenarios on it
    (ppc64le: spapr NVDIMMs through PAPR_SCM; pmem writes skip under TCG, see arch.py)."""
    out = kbuild.build(kernel_tree, arch, base=base)

    _passes(
        arch,
        out,
        tmp_path,
        "testcases/test_dimm.py",
        "testcases/test_memmap_on_memory.py",
        "testcases/test_nvdimm.py",
    )


def test_kbuild_debug_kernel_passes_the_scenarios(kernel_tree: Path, tmp_path: Path) -> None:
    """The same tree with kconfigs/debug.config (DEBUG_VM, DEBUG_VM_PGFLAGS, DEBUG_PAGEALLOC,
    ...): a stock kernel must pass every scenario with all of them on (0 false failures), so
    that a WARNING there is the change under test."""
    out = kbuild.build(kernel_tree, X86_64, base="tinyconfig", debug=True)

    _passes(
        X86_64,
        out,
        tmp_path,
        "testcases/test_dimm.py",
        "testcases/test_memmap_on_memory.py",
        "testcases/test_virtio_mem.py",
        "testcases/test_nvdimm.py",
        "testcases/test_numa.py",
    )
