"""A real Debian archive on 127.0.0.1 for the tests: signed InRelease files, Packages
indexes, pools served over HTTP, and apt (memhp's private configuration) in front of it.

Its packages are real .debs (hard links to memhp's download cache, or small ones built
with dpkg-deb), so an image built from it boots. A test lists whatever it needs, including
files the pool does not have or whose bytes do not match the index: the archive's gaps as
seen in the field.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import cache
from harness.images.apt import KEYRING_ENV, MIRROR_ENV, SECURITY_MIRROR_ENV
from harness.progress import progress


@dataclass
class Entry:
    """One Packages stanza and what the pool serves for it."""

    control: dict[str, str]  # Package, Version, Architecture, Depends, ...
    filename: str  # pool path, relative to the archive root
    sha256: str
    size: int
    served: bytes | Path | None  # None: listed, but the pool lacks the file (404)


@dataclass
class Archive:
    """One archive root (debian or debian-security) with its suites."""

    root: Path
    suites: dict[str, list[Entry]] = field(default_factory=dict)

    def add(
        self,
        suite: str,
        deb: Path,
        *,
        pool: str = "pool/main",
        served: bytes | Path | str | None = "file",
        **override: str,
    ) -> Entry:
        """List ``deb`` in ``suite``. ``served``: "file" (the deb itself), None (missing),
        or other bytes (a corrupt copy). ``override`` changes control fields (a version the
        pool does not have, say)."""
        control = _control(deb)
        control.update(override)
        name, version, arch = control["Package"], control["Version"], control["Architecture"]
        filename = f"{pool}/{name[0]}/{name}/{name}_{version.split(':')[-1]}_{arch}.deb"
        entry = Entry(
            control, filename, _sha256(deb), deb.stat().st_size, deb if served == "file" else served
        )  # type: ignore[arg-type]
        self.suites.setdefault(suite, []).append(entry)
        return entry

    def publish(self, gpg: Gpg, arch: str) -> None:
        for suite, entries in self.suites.items():
            for e in entries:
                dest = self.root / e.filename
                dest.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(e.served, Path):
                    _link(e.served, dest)
                elif isinstance(e.served, bytes):
                    dest.write_bytes(e.served)
            dists = self.root / "dists" / suite
            packages = dists / "main" / f"binary-{arch}" / "Packages"
            packages.parent.mkdir(parents=True, exist_ok=True)
            packages.write_text("\n".join(_stanza(e) for e in entries))
            rel = packages.relative_to(dists).as_posix()
            data = packages.read_bytes()
            release = dists / "Release"
            release.write_text(
                f"Origin: memhp-test\nLabel: memhp-test\nSuite: {suite}\nCodename: {suite}\n"
                f"Date: {email.utils.formatdate(usegmt=True)}\nArchitectures: {arch}\n"
                f"Components: main\nSHA256:\n {hashlib.sha256(data).hexdigest()} "
                f"{len(data)} {rel}\n"
            )
            gpg.clearsign(release, dists / "InRelease")


class Gpg:
    """A throwaway signing key; ``keyring`` is what apt's signed-by takes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True)
        self._gpg(
            "--quick-generate-key",
            "memhp test archive <test@memhp.invalid>",
            "ed25519",
            "sign",
            "never",
        )
        self.keyring = home / "keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export").stdout)

    def close(self) -> None:
        """End the gpg-agent (and keyboxd) that gpg started for this home: a test leaves
        no daemon behind."""
        if shutil.which("gpgconf"):
            subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False)

    def clearsign(self, src: Path, dest: Path) -> None:
        self._gpg("--clearsign", "--output", str(dest), str(src))

    def _gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "gpg",
                "--homedir",
                str(self.home),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                *args,
            ],
            capture_output=True,
            check=True,
        )


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1; yields the base URL. Stops with the block."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def memhp_pointed_at(top: Path, arch: str, main: Archive, security: Archive) -> Iterator[list[str]]:
    """Publish both archives (signed by a throwaway key), serve ``top/www`` on loopback and
    point memhp at it, with an empty cache of its own under ``top/cache``; yields the
    progress lines memhp prints meanwhile."""
    gpg = Gpg(top / "gnupg")
    main.publish(gpg, arch)
    security.publish(gpg, arch)
    gpg.close()
    notes: list[str] = []
    with serve(top / "www") as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.ENV, str(top / "cache"))
        mp.setenv(MIRROR_ENV, f"{url}/{main.root.name}")
        mp.setenv(SECURITY_MIRROR_ENV, f"{url}/{security.root.name}")
        mp.setenv(KEYRING_ENV, str(gpg.keyring))
        mp.setattr(progress, "sink", notes.append)
        mp.setattr(progress, "quiet", False)
        yield notes


def build_deb(dest: Path, control: dict[str, str], files: dict[str, bytes] | None = None) -> Path:
    """A small real .deb (dpkg-deb --build), e.g. a metapackage."""
    tree = dest.with_suffix(".tree")
    (tree / "DEBIAN").mkdir(parents=True)
    fields = {"Maintainer": "memhp tests <test@memhp.invalid>", "Description": "test", **control}
    (tree / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    for rel, data in (files or {}).items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(dest)],
        capture_output=True,
        check=True,
    )
    shutil.rmtree(tree)
    return dest


def split_kernel(deb: Path, dest: Path, abi: str, version: str) -> dict[str, Path]:
    """Debian 7.x's split layout made from a classic kernel .deb (boot/vmlinu[xz]-REL,
    boot/config-REL, lib/modules/REL): linux-binary-ABI holds the kernel as
    usr/lib/modules/REL/vmlinuz (whatever it is: an ELF vmlinux on ppc64el), linux-base-ABI
    its config, linux-modules-ABI the modules, and linux-image-ABI nothing but a Depends on
    the three. Part -> .deb."""
    tree = dest / "unpacked"
    tree.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    kernel = next(p for p in sorted((tree / "boot").iterdir()) if p.name.startswith("vmlinu"))
    release = kernel.name.split("-", 1)[1]
    modules = next(d for d in (tree / "lib/modules", tree / "usr/lib/modules") if d.is_dir())
    arch = _control(deb)["Architecture"]
    moved = {
        "binary": {kernel: "vmlinuz"},
        "base": {tree / "boot" / f"config-{release}": "config"},
        "modules": {modules / release / "kernel": "kernel"},
    }
    out = {}
    for part, files in moved.items():
        root = dest / part
        target = root / "usr/lib/modules" / release
        target.mkdir(parents=True)
        for src, name in files.items():
            src.rename(target / name)
        depends = "" if part == "base" else f"linux-base-{abi} (= {version})"
        out[part] = _build_tree(
            root, dest / f"{part}.deb", f"linux-{part}-{abi}", version, arch, depends
        )
    depends = ", ".join(
        f"linux-{part}-{abi} (= {version})" for part in ("base", "binary", "modules")
    )
    out["image"] = _build_tree(
        dest / "image",
        dest / "image.deb",
        f"linux-image-{abi}",
        version,
        arch,
        f"linux-base (>= 4.17~), kmod, {depends}",
    )
    shutil.rmtree(tree)
    return out


def _build_tree(root: Path, deb: Path, name: str, version: str, arch: str, depends: str) -> Path:
    """``root`` as a .deb, uncompressed (its modules are compressed already)."""
    (root / "DEBIAN").mkdir(parents=True)
    control = {"Package": name, "Version": version, "Architecture": arch, "Depends": depends}
    fields = {"Maintainer": "memhp tests <test@memhp.invalid>", "Description": "test", **control}
    (root / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v))
    subprocess.run(
        ["dpkg-deb", "-Znone", "--root-owner-group", "--build", str(root), str(deb)],
        capture_output=True,
        check=True,
    )
    shutil.rmtree(root)
    return deb


def _control(deb: Path) -> dict[str, str]:
    text = subprocess.run(
        ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "\t")):
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _stanza(e: Entry) -> str:
    keep = ("Package", "Source", "Version", "Architecture", "Pre-Depends", "Depends")
    lines = [f"{k}: {e.control[k]}" for k in keep if k in e.control]
    lines += [f"Filename: {e.filename}", f"Size: {e.size}", f"SHA256: {e.sha256}"]
    return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
