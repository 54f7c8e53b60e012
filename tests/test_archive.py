"""Image resolution against a real apt archive on 127.0.0.1 (tests/mirror.py) with the gaps
the Debian archive shows in the field: an index that lists a newer kernel its pool lacks, a
file whose bytes do not match its index, a metapackage with the newest version, and no
archive at all. Real apt, real .debs, and the image it gives boots.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mirror import Archive, build_deb, memhp_pointed_at

from harness import cache, cli, images, preflight
from harness.arch import X86_64
from harness.errors import ArchiveError
from harness.images import lockfile
from harness.images.apt import MIRROR_ENV, SECURITY_MIRROR_ENV
from harness.qemu.machine import MachineConfig, QemuMachine

SPEC = "debian:6.12"
MISSING = "6.12.999"  # listed by trixie-security, absent from its pool
LONE = "linux-image-6.18.1+deb13-amd64"  # all in one .deb, with an unlisted dependency
LONE_BASE = "linux-base-6.18.1+deb13-amd64"
LONE_VERSION = "6.18.1-1~bpo13+1"


@dataclass
class Setup:
    cache: Path
    kernel_version: str  # what the archive really has
    notes: list[str]


def _real_debs() -> tuple[Path, list[Path]]:
    """The newest 6.12 amd64 kernel .deb and the userspace .debs memhp downloaded before."""
    debs = cache.path("apt", "amd64", "debs")
    kernels = sorted(
        d
        for d in debs.glob("linux-image-6.12.*.deb")
        if re.match(r"linux-image-6\.12\.\d+\+deb\d+-amd64-unsigned_", d.name)
    )
    userspace = [d for d in debs.glob("*.deb") if not d.name.startswith("linux-")]
    if not kernels or len(userspace) < 10:
        pytest.skip(f"no Debian 6.12 amd64 kernel in {debs}: run ./setup.sh first")
    return kernels[-1], userspace


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    kernel, userspace = _real_debs()
    top = tmp_path_factory.mktemp("archive")
    main, security = Archive(top / "www/debian"), Archive(top / "www/debian-security")
    for deb in userspace:
        main.add("bookworm", deb)
    # The real kernel: trixie's pool has it cut short, trixie-security's is intact.
    entry = main.add("trixie", kernel, served=kernel.read_bytes()[: 1 << 20])
    security.add("trixie-security", kernel, pool="pool/updates/main")
    name, version = entry.control["Package"], entry.control["Version"]
    newer = name.replace(version.split("-")[0], MISSING)
    security.add(
        "trixie-security",
        kernel,
        pool="pool/updates/main",
        served=None,
        Package=newer,
        Version=f"{MISSING}-1",
    )
    # The metapackage shares the newest version and holds no kernel.
    meta = build_deb(
        top / "meta.deb",
        {
            "Package": "linux-image-6.12-amd64",
            "Version": f"{MISSING}-1",
            "Architecture": "amd64",
            "Depends": f"{newer} (= {MISSING}-1)",
        },
    )
    main.add("trixie", meta)
    # trixie-backports' 6.18 for amd64: one .deb holds kernel, config and modules, and it
    # depends on a package of its own build that no index lists.
    main.add(
        "trixie-backports",
        kernel,
        Package=LONE,
        Version=LONE_VERSION,
        Depends=f"kmod, {LONE_BASE} (= {LONE_VERSION})",
    )
    with memhp_pointed_at(top, "amd64", main, security) as notes:
        yield Setup(top / "cache", version, notes)


@pytest.fixture(scope="module")
def built(archive: Setup) -> images.Image:
    return images.build(SPEC, X86_64)


def test_image_is_the_newest_build_the_archive_really_has(
    archive: Setup, built: images.Image
) -> None:
    kernel = built.kernel_debs[0]
    assert (kernel.version, kernel.name.endswith("-unsigned")) == (archive.kernel_version, True)
    said = "\n".join(archive.notes)
    assert re.search(rf"{MISSING}-1 \(trixie-security\): 404", said), said
    assert "Hash Sum mismatch" in said and "from trixie-security instead" in said, said
    assert f"using {kernel}" in said, said
    assert "linux-image-6.12-amd64 " not in said  # the metapackage was never a candidate


def test_that_image_boots(built: images.Image) -> None:
    with QemuMachine(MachineConfig(arch=X86_64, image=built)) as m:
        assert m.guest is not None
        assert m.guest.run("uname -r").stdout.strip() == built.release


def test_a_build_is_made_from_what_it_holds_not_from_its_dependencies(archive: Setup) -> None:
    image = images.build("debian:6.18", X86_64)

    assert [p.name for p in image.kernel_debs] == [LONE]
    assert image.kernel_files["kernel"] == f"boot/vmlinuz-{image.release} ({LONE})"
    assert image.kernel_files["config"] == f"boot/config-{image.release} ({LONE})"
    assert image.kernel_files["modules"] == f"usr/lib/modules/{image.release} ({LONE})"
    assert f"{LONE_BASE} (= {LONE_VERSION}): no index lists it" in image.left_out
    assert any(f"left out: {LONE_BASE}" in n for n in archive.notes), archive.notes


def test_lock_pins_what_was_built_and_rebuilds_from_it(
    archive: Setup, built: images.Image, tmp_path: Path
) -> None:
    lock = tmp_path / "memhp.lock"
    assert (
        cli.main(["image", "lock", "--arch", "x86_64", "--kernel", SPEC, "--lock", str(lock)]) == 0
    )
    pinned = lockfile.load(lock).pinned("x86_64", SPEC)
    assert pinned is not None and pinned.kernel.package == built.kernel_debs[0]
    shutil.rmtree(built.path)

    again = images.build(SPEC, X86_64, pinned=pinned)

    assert again.path == built.path and again.damage() is None


def test_locked_run_of_a_spec_the_lock_lacks_is_one_line_exit_2(
    archive: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tmp_path / "memhp.lock"
    lockfile.Lock(lock).save()

    assert cli.main(["image", "build", "--kernel", SPEC, "--lock", str(lock)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not in" in err[0] and "memhp image lock" in err[0], err


def test_damaged_image_is_rebuilt_not_booted(archive: Setup, built: images.Image) -> None:
    initramfs = built.initramfs
    initramfs.write_bytes(initramfs.read_bytes()[: initramfs.stat().st_size // 2])

    again = images.build(SPEC, X86_64)

    assert again.damage() is None
    assert any("is damaged" in n and "initramfs.cpio" in n for n in archive.notes)


def test_without_an_archive_the_cached_image_is_used_and_said(
    archive: Setup, built: images.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/debian")  # discard: nothing listens
    monkeypatch.setenv(SECURITY_MIRROR_ENV, "http://127.0.0.1:9/debian-security")
    shutil.rmtree(archive.cache / "apt")  # no index from before either
    start = time.monotonic()

    image = images.build(SPEC, X86_64)

    assert image.path == built.path
    assert any("the archive gave nothing" in n for n in archive.notes[-3:]), archive.notes
    assert time.monotonic() - start < 30
    shutil.rmtree(image.path)
    with pytest.raises(ArchiveError, match="no cached image"):
        images.build(SPEC, X86_64)


def test_an_unreachable_archive_is_infrastructure_not_bad_input(
    archive: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """preflight lets the run go on (its scenarios will be MISS, exit 3), saying why; the
    image build then fails as infrastructure (ArchiveError), never as usage."""
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/debian")  # discard: nothing listens
    monkeypatch.setenv(SECURITY_MIRROR_ENV, "http://127.0.0.1:9/debian-security")
    monkeypatch.setenv(cache.ENV, str(archive.cache.parent / "empty-cache"))

    plan = preflight.check(["x86_64"], [SPEC], accel="tcg", expects=[])

    assert [t.kernel for t in plan.targets] == [SPEC]
    assert any("will be MISS" in n for n in archive.notes[-3:]), archive.notes[-3:]
    with pytest.raises(ArchiveError):
        images.build(SPEC, X86_64)
