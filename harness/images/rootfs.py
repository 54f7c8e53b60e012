"""The guest root filesystem: Debian packages unpacked, usrmerged, busybox applets, the
recipe from guest-images/ (init, module and package lists) installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.errors import ImageError
from harness.images.tools import host_tool
from harness.resources import RECIPE_DIR


def recipe_lines(name: str) -> list[list[str]]:
    """Words of each line of a recipe list, '#' comments dropped."""
    lines = (line.split("#", 1)[0].split() for line in (RECIPE_DIR / name).read_text().splitlines())
    return [words for words in lines if words]


def recipe_list(name: str) -> list[str]:
    """First word of each line of a recipe list."""
    return [words[0] for words in recipe_lines(name)]


def extract(deb: Path, dest: Path) -> list[str]:
    """Unpack ``deb`` into ``dest``; the files and links it held ("usr/lib/modules/...")."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [host_tool("dpkg-deb"), "-X", str(deb), str(dest)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ImageError(f"dpkg-deb -X {deb.name} failed: {proc.stderr.strip()}")
    paths = (line.removeprefix("./") for line in proc.stdout.splitlines())
    return [path for path in paths if path and not path.endswith("/")]


def usrmerge(root: Path) -> None:
    """Fold /bin, /sbin, /lib* into /usr so bookworm and trixie packages agree on paths."""
    for top in ("bin", "sbin", "lib", "lib64"):
        src = root / top
        dst = root / "usr" / top
        if src.is_symlink():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            for item in src.iterdir():
                target = dst / item.name
                if target.is_dir() and item.is_dir() and not item.is_symlink():
                    shutil.copytree(item, target, symlinks=True, dirs_exist_ok=True)
                    shutil.rmtree(item)
                else:
                    item.replace(target)
            src.rmdir()
        src.symlink_to(f"usr/{top}")
    # Docs and glibc's iconv modules are half the size and nothing in the guest uses them.
    for junk in [root / "usr/share", *root.glob("usr/lib/*/gconv")]:
        shutil.rmtree(junk, ignore_errors=True)


def install_recipe(root: Path) -> None:
    etc = root / "etc"
    (etc / "memhp").mkdir(parents=True, exist_ok=True)
    for name in ("modules.early", "modules"):
        (etc / "memhp" / name).touch()
    init = root / "init"
    shutil.copyfile(RECIPE_DIR / "init", init)
    init.chmod(0o755)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    sh = root / "usr/bin/sh"
    if not sh.exists():
        sh.symlink_to("busybox")
    busybox = root / "usr/bin/busybox"
    if not busybox.exists():
        raise ImageError("busybox-static did not provide /usr/bin/busybox")
    for applet in busybox_applets(busybox.read_bytes()):
        link = root / "usr/bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shells").write_text("/bin/sh\n")
    for d in ("proc", "sys", "dev", "tmp", "run", "var", "mnt"):
        (root / d).mkdir(exist_ok=True)


def busybox_applets(binary: bytes) -> list[str]:
    """Applet names from busybox's packed name table ("[\\0[[\\0acpid\\0...\\0\\0").

    Read from the binary rather than by running it: it may be another arch's.
    Empty if the table is not found (init then runs busybox --install).
    """
    start = binary.find(b"\0[\0[[\0")
    if start < 0:
        return []
    end = binary.find(b"\0\0", start + 1)
    names = binary[start + 1 : end].decode("ascii", "replace").split("\0")
    return [n for n in names if n and "/" not in n and n != "busybox"]
