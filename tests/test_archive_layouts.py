"""Debian's split kernel layout (7.x) on ppc64el, through a real apt archive on 127.0.0.1
(tests/mirror.py): the kernel is an ELF vmlinux shipped as usr/lib/modules/REL/vmlinuz in
linux-binary-*, its config in linux-base-*, its modules in linux-modules-*, and
linux-image-* holds nothing but the dependencies. An image is built from what those
packages hold, whatever the files are called, and it boots; a line whose modules package
no index lists stays MISS, saying so.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mirror import Archive, memhp_pointed_at, split_kernel

from harness import cache, images
from harness.arch import PPC64LE, kernel_kind
from harness.errors import ArchiveError
from harness.qemu.machine import MachineConfig, QemuMachine

SPLIT = "7.2.1+deb13-powerpc64le"  # a split build with everything
NO_MODULES = "7.1.1+deb13-powerpc64le"  # its linux-modules-* is in no index
BPO = "~bpo13+1"


@dataclass
class Setup:
    release: str  # what the kernel says it is
    notes: list[str]


def _real_debs() -> tuple[Path, list[Path]]:
    """A classic ppc64el 6.12 kernel .deb and the userspace .debs memhp downloaded before."""
    debs = cache.path("apt", "ppc64el", "debs")
    kernels = sorted(debs.glob("linux-image-6.12.*-powerpc64le_*.deb"))
    userspace = [d for d in debs.glob("*.deb") if not d.name.startswith("linux-")]
    if not kernels or len(userspace) < 10:
        pytest.skip(f"no Debian 6.12 ppc64el kernel in {debs}: run ./setup.sh first")
    return kernels[-1], userspace


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kernel, userspace = _real_debs()
    top = tmp_path_factory.mktemp("archive")
    main = Archive(top / "www/debian")
    for deb in userspace:
        main.add("bookworm", deb)
    parts = split_kernel(kernel, top / "split", SPLIT, f"7.2.1-1{BPO}")
    for deb in parts.values():
        main.add("trixie-backports", deb)
    # The same files under another build's names, but no index lists its linux-modules-*.
    version = f"7.1.1-1{BPO}"
    for part, deb in parts.items():
        if part == "modules":
            continue
        control = {"Package": f"linux-{part}-{NO_MODULES}", "Version": version}
        if part != "base":
            deps = ("base", "binary", "modules") if part == "image" else ("base",)
            control["Depends"] = ", ".join(f"linux-{d}-{NO_MODULES} (= {version})" for d in deps)
        main.add("trixie-backports", deb, **control)
    release = kernel_release(kernel)
    security = Archive(top / "www/debian-security")
    with memhp_pointed_at(top, "ppc64el", main, security) as notes:
        yield Setup(release, notes)


def kernel_release(deb: Path) -> str:
    """REL of the boot/vmlinu[xz]-REL a classic kernel .deb holds."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
    return re.findall(r"\./boot/vmlinu[xz]-(\S+)$", listing.stdout, re.M)[0]


@pytest.fixture(scope="module")
def built(archive: Setup) -> images.Image:
    return images.build("debian:7.2", PPC64LE)


def test_split_build_gives_the_elf_kernel_named_vmlinuz(
    archive: Setup, built: images.Image
) -> None:
    assert kernel_kind(built.kernel.read_bytes()[:0x210]) == "ppc64le"
    assert built.release == archive.release
    assert built.kernel_files["kernel"] == (
        f"usr/lib/modules/{archive.release}/vmlinuz (linux-binary-{SPLIT})"
    )
    assert built.kernel_files["config"].endswith(f"/config (linux-base-{SPLIT})")
    assert built.kernel_files["modules"].endswith(f"(linux-modules-{SPLIT})")
    assert built.config is not None and "CONFIG_MEMORY_HOTPLUG=y" in built.config.read_text()
    assert "virtio_net.ko" in built.modules, built.modules
    assert {p.name for p in built.kernel_debs} == {
        f"linux-{part}-{SPLIT}" for part in ("image", "base", "binary", "modules")
    }


def test_split_build_says_what_it_left_out(archive: Setup, built: images.Image) -> None:
    assert any("linux-base (>= 4.17~)" in dep and "installing" in dep for dep in built.left_out)
    said = "\n".join(archive.notes)
    assert f"kernel usr/lib/modules/{archive.release}/vmlinuz (linux-binary-{SPLIT})" in said


def test_that_split_image_boots(built: images.Image) -> None:
    with QemuMachine(MachineConfig(arch=PPC64LE, image=built)) as m:
        assert m.guest is not None
        assert m.guest.run("uname -r").stdout.strip() == built.release


def test_a_line_without_modules_anywhere_stays_miss_naming_the_package(
    archive: Setup,
) -> None:
    with pytest.raises(ArchiveError) as caught:
        images.build("debian:7.1", PPC64LE)

    said = str(caught.value)
    assert f"no modules for {archive.release}" in said, said
    assert f"linux-modules-{NO_MODULES} (= 7.1.1-1{BPO}): no index lists it" in said, said
    assert "no cached image" in said, said
