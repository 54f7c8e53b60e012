"""Unit tests for harness.images.write_cpio: the initramfs's newc archive."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.images.cpio import write_cpio


@dataclass
class Entry:
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: tuple[int, int]
    data: bytes


def read_newc(blob: bytes) -> list[tuple[str, Entry]]:
    """A minimal newc reader: 110-byte header, name and data each padded to 4 bytes."""
    entries, pos = [], 0
    while True:
        assert blob[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        f = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name_end = pos + 110 + namesize
        assert blob[name_end - 1] == 0, "name not NUL-terminated"
        name = blob[pos + 110 : name_end - 1].decode()
        data_start = name_end + (-name_end % 4)
        assert blob[name_end:data_start] == b"\0" * (data_start - name_end)
        data = blob[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        entries.append((name, Entry(f[0], f[1], f[2], f[3], f[4], (f[9], f[10]), data)))
        if name == "TRAILER!!!":
            assert pos == len(blob)
            return entries


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/memhp").mkdir(parents=True)
    (root / "etc/memhp/modules").write_text("virtio_mem.ko\n")
    (root / "init").write_bytes(b"#!/bin/sh\necho hi\n")  # 18 bytes: needs padding
    (root / "init").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    return root


@pytest.fixture
def archive(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "initramfs.cpio"
    write_cpio(tree, dest)
    return dest


def test_cpio_lists_parents_before_children(archive: Path) -> None:
    names = [n for n, _ in read_newc(archive.read_bytes())]
    assert names == [
        "bin",
        "etc",
        "init",
        "etc/memhp",
        "etc/memhp/modules",
        "dev/console",
        "TRAILER!!!",
    ]


def test_cpio_entries_modes_and_data(archive: Path) -> None:
    entries = dict(read_newc(archive.read_bytes()))
    assert stat.S_ISDIR(entries["etc"].mode)
    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["init"].data == b"#!/bin/sh\necho hi\n"
    assert entries["etc/memhp/modules"].data == b"virtio_mem.ko\n"
    assert stat.S_ISLNK(entries["bin"].mode)
    assert entries["bin"].data == b"usr/bin"
    assert all((e.uid, e.gid) == (0, 0) for e in entries.values())


def test_cpio_inodes_are_unique(archive: Path) -> None:
    inos = [e.ino for n, e in read_newc(archive.read_bytes()) if n != "TRAILER!!!"]
    assert len(set(inos)) == len(inos)
    assert 0 not in inos


def test_cpio_adds_dev_console_char_device(archive: Path) -> None:
    entries = dict(read_newc(archive.read_bytes()))
    console = entries["dev/console"]
    assert console.mode == 0o020600
    assert stat.S_ISCHR(console.mode)
    assert console.rdev == (5, 1)
    assert console.data == b""


def test_cpio_ends_with_trailer(archive: Path) -> None:
    name, trailer = read_newc(archive.read_bytes())[-1]
    assert (name, trailer.mode, trailer.data) == ("TRAILER!!!", 0, b"")
    assert archive.stat().st_size % 4 == 0


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio is not installed")
def test_cpio_extracts_with_gnu_cpio(archive: Path, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # dev/console needs mknod, which non-root cannot do: judge the rest of the tree.
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"],
        input=archive.read_bytes(),
        cwd=out,
        capture_output=True,
        check=False,
    )

    def listing(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*")}

    assert listing(out) - {"dev", "dev/console"} == listing(tree)
    assert (out / "init").read_bytes() == (tree / "init").read_bytes()
    assert (out / "init").stat().st_mode & 0o777 == 0o755
    assert (out / "etc/memhp/modules").read_text() == "virtio_mem.ko\n"
    assert os.readlink(out / "bin") == "usr/bin"
    if os.geteuid() == 0:
        console = (out / "dev/console").lstat()
        assert stat.S_ISCHR(console.st_mode)
        assert (os.major(console.st_rdev), os.minor(console.st_rdev)) == (5, 1)
