"""QEMU specs: resolved against a real Debian archive on 127.0.0.1 (the tests' mirror, with
the real QEMU 10.0 .debs and their library closure), refused in one line before any boot,
and a QEMU binary that is not on PATH run by path."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mirror import Archive, memhp_pointed_at

from harness import cache
from harness.arch import X86_64
from harness.errors import ArchiveError, UsageError
from harness.images import lockfile
from harness.images.apt import MIRROR_ENV, SECURITY_MIRROR_ENV, AptCache
from harness.qemu import builds

ROOT = Path(__file__).resolve().parent.parent
GONE = "1:10.0.99+ds-0+deb13u1"  # listed in the index, missing from the pool
HOST_ENV = dict(os.environ)  # before this module's archive points memhp at the loopback one


@dataclass
class Setup:
    cache: Path
    version: str  # the real build's version
    notes: list[str]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    real = builds.resolve("debian:10.0", X86_64)  # the real archive (or memhp's cache)
    debs = cache.path("apt", "amd64", "debs")
    top = tmp_path_factory.mktemp("qemu-archive")
    main = Archive(top / "www/debian")
    qemu = next(p for p in real.packages if p.name == X86_64.qemu_package)
    for pkg in real.packages:
        main.add("trixie", debs / pkg.deb_name)
    main.add("trixie", debs / qemu.deb_name, served=None, Version=GONE)
    security = Archive(top / "www/debian-security")
    with memhp_pointed_at(top, "amd64", main, security) as notes:
        yield Setup(top / "cache", qemu.version, notes)


def test_the_newest_build_that_downloads_runs_from_its_own_root(archive: Setup) -> None:
    build = builds.resolve("debian:10.0", X86_64)

    said = "\n".join(archive.notes)
    assert build.identity == f"qemu-system-x86 {archive.version} (trixie)", build.identity
    assert re.search(
        rf"newer builds could not be had: qemu-system-x86 {re.escape(GONE)}.*404", said
    ), said
    assert str(archive.cache) in build.argv[0], "not run with its own loader"
    assert build.env["QEMU_MODULE_DIR"].startswith(str(archive.cache))
    assert {p.name for p in build.packages} >= {"qemu-system-common", "libc6", "libglib2.0-0t64"}
    version = subprocess.run(
        [*build.argv, "--version"], capture_output=True, text=True, env={**os.environ, **build.env}
    ).stdout
    assert archive.version.split(":")[1].split("+")[0] in version, version


def test_a_line_debian_does_not_have_is_named_with_the_lines_it_has(archive: Setup) -> None:
    with pytest.raises(UsageError, match=r"no qemu-system-x86 9\.9 .*lines it has: 10\.0"):
        builds.resolve("debian:9.9", X86_64)


def test_without_an_archive_a_debian_qemu_is_infrastructure(
    archive: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/debian")  # discard: nothing listens
    monkeypatch.setenv(SECURITY_MIRROR_ENV, "http://127.0.0.1:9/debian-security")
    monkeypatch.setenv(cache.ENV, str(tmp_path / "empty"))
    with pytest.raises(ArchiveError, match="no Debian amd64 index"):
        builds.resolve("debian:10.0", X86_64, AptCache(tmp_path / "empty/apt", "amd64"))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("debian:9.9", "Debian has no qemu-system-x86 9.9"),
        ("/nonexistent/qemu", "not a QEMU spec"),
        ("qemu10", "not a QEMU spec"),
    ],
)
def test_bad_qemu_input_is_one_line_and_exit_2_before_any_boot(
    spec: str, says: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--arch",
            "x86_64",
            "--kernel",
            "debian:6.12",
            "--qemu",
            spec,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**HOST_ENV, "TMPDIR": str(tmp_path)},  # the real archive: its kernel is fine
    )
    lines = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip() and not ln.startswith("memhp: apt")
    ]
    assert proc.returncode == 2, lines
    assert len(lines) == 1 and says in lines[0], lines
    assert not list(tmp_path.glob("memhp-*")), "a guest was started"


def test_a_qemu_binary_not_on_path_runs_the_scenarios(tmp_path: Path) -> None:
    """A QEMU developer's binary, by path, with no QEMU on PATH at all: a build directory
    (here a copy of the host's binary, its modules beside it and its firmware in pc-bios/,
    as meson leaves them)."""
    own = tmp_path / "build"
    own.mkdir()
    shutil.copy2(shutil.which(X86_64.qemu_binary) or "", own / X86_64.qemu_binary)
    for module in Path(f"/usr/lib/{X86_64.triplet}/qemu").glob("*.so"):
        shutil.copy2(module, own / module.name)
    bios = own / "pc-bios"  # a build tree's firmware, all in one place
    bios.mkdir()
    for d in ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"):
        for f in Path(d).glob("*") if Path(d).is_dir() else []:
            if not (bios / f.name).exists():
                (bios / f.name).symlink_to(f)
    bin_dir = tmp_path / "bin"  # the host's tools, every one but QEMU
    bin_dir.mkdir()
    for d in HOST_ENV["PATH"].split(os.pathsep):
        for tool in Path(d).glob("*") if Path(d).is_dir() else []:
            if not tool.name.startswith("qemu") and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "testcases/test_dimm.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "test_dimm_online_movable",
            "--memhp-arch",
            "x86_64",
            "--memhp-kernel",
            "debian:6.12",
            "--memhp-qemu",
            str(own),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**HOST_ENV, "PATH": str(bin_dir)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"-qemu-{own}" in proc.stdout and "PASS" in proc.stdout, proc.stdout[-2000:]


def test_a_lock_pins_the_debian_qemu_and_runs_exactly_it(archive: Setup, tmp_path: Path) -> None:
    build = builds.resolve("debian:10.0", X86_64)
    lock = lockfile.Lock(tmp_path / "memhp.lock")
    lock.pin_qemu("x86_64", "debian:10.0", build.identity, build.packages)
    lock.save()

    again = lockfile.load(tmp_path / "memhp.lock")
    pinned = again.pinned_qemu("x86_64", "debian:10.0")

    assert pinned is not None and {p.sha256 for p in pinned} == {p.sha256 for p in build.packages}
    assert builds.resolve("debian:10.0", X86_64, pinned=pinned).argv == build.argv
    assert again.pinned_qemu("x86_64", "host") is None
    with pytest.raises(UsageError, match=r"QEMU debian:11\.1 \(x86_64\) is not in"):
        again.pinned_qemu("x86_64", "debian:11.1")
