"""Guest images: a kernel plus an initramfs with busybox, dropbear and the scenario modules.

The recipe (init script, module and package lists) lives in ``guest-images/``. Images are
cached by a hash of everything that goes into them; a second build of the same inputs is a
no-op. Nothing here needs root beyond what apt itself does: packages are unpacked with
``dpkg-deb -x``, device nodes exist only as cpio headers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import cache, kernels, kimage
from harness.arch import Arch
from harness.debian import USERSPACE_SUITE, AptCache, Package, file_sha256
from harness.errors import ArchiveError, ImageError, UsageError
from harness.progress import progress

if TYPE_CHECKING:
    from harness.lockfile import Pinned

RECIPE_DIR = Path(__file__).resolve().parent.parent / "guest-images"
READY_MARKER = "MEMHP-READY"  # init: modules loaded, everything up
SSHD_MARKER = "memhp: sshd started"  # init: SSH can start (modules still loading)
SSHD_FAILED_MARKER = "memhp: sshd failed"  # init: dropbear did not start
MODULE_DIR = "lib/modules/memhp"  # flat: the init insmods in the order of etc/memhp/modules


# What an image directory holds; image.json records each one's SHA256.
IMAGE_FILES = ("kernel", "initramfs.cpio", "config", "id_ed25519", "host_key.pub")


@dataclass(frozen=True)
class Image:
    """A built image, as recorded in its directory's image.json."""

    path: Path
    arch: str
    spec: str
    release: str  # uname -r
    kernel_package: str  # "linux-image-... VERSION (suite)" or the local path
    modules: tuple[str, ...]  # modules the initramfs loads, in order
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA256
    built: float = 0.0  # time.time() of the build
    # The Debian packages it was made of (what a lock file pins).
    kernel_debs: tuple[Package, ...] = ()
    userspace_debs: tuple[Package, ...] = ()

    @property
    def kernel(self) -> Path:
        return self.path / "kernel"

    @property
    def initramfs(self) -> Path:
        return self.path / "initramfs.cpio"

    @property
    def client_key(self) -> Path:
        return self.path / "id_ed25519"

    @property
    def host_key(self) -> str:
        """The guest's ssh host public key, 'ssh-ed25519 AAAA...'."""
        return (self.path / "host_key.pub").read_text().strip()

    @property
    def config(self) -> Path | None:
        cfg = self.path / "config"
        return cfg if cfg.exists() else None

    def damage(self) -> str | None:
        """What is wrong with the image's files (missing, changed), or None if intact."""
        if not self.files:
            return "image.json records no checksums (an image of an older memhp)"
        for name, digest in self.files.items():
            path = self.path / name
            if not path.is_file():
                return f"{path} is missing"
            if file_sha256(path) != digest:
                return f"{path} does not match its recorded SHA256 (cut short or changed?)"
        return None

    @classmethod
    def load(cls, path: Path) -> Image:
        meta = json.loads((path / "image.json").read_text())
        return cls(path=path, arch=meta["arch"], spec=meta["spec"], release=meta["release"],
                   kernel_package=meta["kernel_package"], modules=tuple(meta["modules"]),
                   files=dict(meta.get("files", {})), built=float(meta.get("built", 0)),
                   kernel_debs=tuple(Package(**p) for p in meta.get("kernel_debs", [])),
                   userspace_debs=tuple(Package(**p) for p in meta.get("userspace_debs", [])))


def build(spec: str, arch: Arch, *, pinned: Pinned | None = None) -> Image:
    """The image for ``spec`` on ``arch``: cached and intact, else built.

    A debian: spec is built from its newest build whose packages download (each from the
    pool of the suite that listed it); the run says which one it took and why. ``pinned``
    (from a lock file) fixes the packages instead. With no archive at all, the newest
    cached image of the spec is used, and the run says so.
    """
    apt = AptCache(cache.path("apt", arch.debian_arch), arch.debian_arch)
    try:
        if pinned is not None:
            sources: list[kernels.KernelSource] = [pinned.kernel]
            userspace = list(pinned.userspace)
        else:
            if spec.startswith("debian:"):
                apt.update()
            sources = kernels.candidates(spec, arch, apt)
            userspace = apt_userspace(apt)
    except ArchiveError as exc:
        return _cached_instead(spec, arch, str(exc))
    problems: list[str] = []
    for source in sources:
        try:
            image = _cached_or_built(spec, arch, source, userspace, apt)
        except ArchiveError as exc:
            problems += [p for p in str(exc).split("; ") if p not in problems]
            continue
        if problems:
            progress.note(f"{spec} ({arch.name}): using {image.kernel_package}; newer builds "
                          f"could not be had: {'; '.join(problems)}")
        return image
    return _cached_instead(spec, arch, "; ".join(problems))


def _cached_or_built(spec: str, arch: Arch, source: kernels.KernelSource,
                     userspace: list[Package], apt: AptCache) -> Image:
    key = image_key(arch, source, userspace)
    dest = cache.path("images", f"{arch.name}-{_slug(spec)}-{key[:16]}")
    image = _intact(dest)
    if image is not None:
        return image
    with _locked(dest.parent / f"{dest.name}.lock"):
        image = _intact(dest)  # another worker built it meanwhile
        if image is not None:
            return image
        kernel_debs = (apt.download(source.packages)
                       if isinstance(source, kernels.DebianKernel) else [])
        with progress(f"image: building {arch.name} {spec}"):
            return _build(spec, arch, source, kernel_debs, userspace, apt, dest)


def _intact(dest: Path) -> Image | None:
    """The image at ``dest`` if it is there and undamaged; a damaged one is removed."""
    if not (dest / "image.json").exists():
        return None
    image = Image.load(dest)
    problem = image.damage()
    if problem is None:
        return image
    progress.note(f"image {dest.name} is damaged ({problem}): rebuilding it")
    shutil.rmtree(dest, ignore_errors=True)
    return None


def cached(spec: str, arch: Arch) -> Image | None:
    """The newest intact image of ``spec`` in the cache, whatever it was built from."""
    found = []
    for meta in cache.path("images").glob(f"{arch.name}-{_slug(spec)}-*/image.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            image = Image.load(meta.parent)
            if image.spec == spec and image.damage() is None:
                found.append(image)
    return max(found, key=lambda i: i.built, default=None)


def _cached_instead(spec: str, arch: Arch, problem: str) -> Image:
    image = cached(spec, arch)
    if image is None:
        raise ArchiveError(f"{spec} ({arch.name}): {problem}; no cached image to fall back on")
    age = (time.time() - image.built) / 86400
    progress.note(f"{spec} ({arch.name}): the archive gave nothing ({problem}); using the "
                  f"cached image of {image.kernel_package}, built {age:.1f} days ago")
    return image


def apt_userspace(apt: AptCache) -> list[Package]:
    if not any(apt.index().values()):
        apt.update()
    # Only shared libraries are followed: maintainer-script dependencies (dpkg, perl,
    # init-system-helpers) have no place in an initramfs.
    return apt.closure(_recipe_list("packages.txt"), USERSPACE_SUITE,
                       follow=lambda name: name.startswith(("lib", "zlib")))


def _build(spec: str, arch: Arch, source: kernels.KernelSource, kernel_debs: list[Path],
           userspace: list[Package], apt: AptCache, dest: Path) -> Image:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp_s:
        tmp = Path(tmp_s)
        out = tmp / "out"
        root = tmp / "root"
        out.mkdir()
        root.mkdir()
        pinned: tuple[Package, ...] = ()
        if isinstance(source, kernels.DebianKernel):
            tree = tmp / "kernel"
            for deb in kernel_debs:
                _extract(deb, tree)
            image, release, modules_dir, config = _debian_kernel_parts(tree, arch, source)
            described = str(source.package)
            pinned = source.packages
        else:
            image, modules_dir = source.image, source.modules
            release = modules_dir.name if modules_dir else "unknown"
            config = _local_config(image, release, modules_dir)
            described = str(image)
        arch.check_kernel(image)
        _install_kernel(image, arch, out / "kernel")
        if config:
            shutil.copyfile(config, out / "config")
        for deb in apt.download(userspace):
            _extract(deb, root)
        _usrmerge(root)
        if modules_dir and not any(modules_dir.rglob("*.ko*")):
            modules_dir = None  # everything built in (a CONFIG_MODULES=n kernel has no .ko)
        if modules_dir and not (modules_dir / "modules.dep").exists():
            if not isinstance(source, kernels.DebianKernel):  # never write into the user's tree
                raise UsageError(f"{modules_dir} has no modules.dep: install the modules with "
                                 "make modules_install INSTALL_MOD_PATH=DIR (runs depmod)")
            _depmod(modules_dir)
        loaded = _install_modules(modules_dir, root) if modules_dir else []
        _install_recipe(root)
        _make_keys(root, out)
        write_cpio(root, out / "initramfs.cpio")
        meta = {"arch": arch.name, "spec": spec, "release": release,
                "kernel_package": described, "modules": loaded, "built": time.time(),
                "files": {name: file_sha256(out / name) for name in IMAGE_FILES
                          if (out / name).is_file()},
                "kernel_debs": [dataclasses.asdict(p) for p in pinned],
                "userspace_debs": [dataclasses.asdict(p) for p in userspace]}
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        out.rename(dest)
    return Image.load(dest)


# -- inputs and cache key --------------------------------------------------------------------


def _recipe_lines(name: str) -> list[list[str]]:
    """Words of each line of a recipe list, '#' comments dropped."""
    lines = (line.split("#", 1)[0].split() for line in (RECIPE_DIR / name).read_text().splitlines())
    return [words for words in lines if words]


def _recipe_list(name: str) -> list[str]:
    """First word of each line of a recipe list."""
    return [words[0] for words in _recipe_lines(name)]


def image_key(arch: Arch, source: kernels.KernelSource, userspace: list[Package]) -> str:
    h = hashlib.sha256()
    h.update(arch.name.encode())
    # The recipe and the code that applies it are inputs too.
    for path in [*sorted(RECIPE_DIR.iterdir()), Path(__file__)]:
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    if isinstance(source, kernels.DebianKernel):
        for pkg in source.packages:
            h.update(pkg.sha256.encode())
    else:
        h.update(file_sha256(source.image).encode())
        if source.modules:
            for mod in sorted(source.modules.rglob("*")):
                if mod.is_file():
                    st = mod.stat()
                    h.update(f"{mod.relative_to(source.modules)}:{st.st_size}:{st.st_mtime_ns}"
                             .encode())
    for pkg in sorted(userspace, key=lambda p: p.name):
        h.update(pkg.sha256.encode())
    return h.hexdigest()


def _slug(spec: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in spec)[-40:]


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- unpacking ---------------------------------------------------------------------------


def _extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([host_tool("dpkg-deb"), "-x", str(deb), str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")


def _debian_kernel_parts(tree: Path, arch: Arch, source: kernels.DebianKernel
                         ) -> tuple[Path, str, Path | None, Path | None]:
    """Kernel image, release, modules dir and config of an unpacked Debian kernel.

    Up to 6.x: boot/vmlinuz-REL and boot/config-REL. The 7.x split packages put them in
    usr/lib/modules/REL/ as vmlinuz (vmlinux) and config.
    """
    name = arch.kernel_name
    for image in sorted(tree.glob(f"boot/{name}-*")):
        release = image.name.split("-", 1)[1]
        config = tree / "boot" / f"config-{release}"
        break
    else:
        found = sorted(tree.glob(f"usr/lib/modules/*/{name}")) + sorted(
            tree.glob(f"lib/modules/*/{name}"))
        if not found:  # e.g. a metapackage the resolution should not have taken
            raise ArchiveError(f"{source.package}: no {name} in the package")
        image = found[0]
        release = image.parent.name
        config = image.parent / "config"
    modules = next((p for p in (tree / "lib/modules" / release, tree / "usr/lib/modules" / release)
                    if p.is_dir()), None)
    return image, release, modules, config if config.exists() else None


def _local_config(image: Path, release: str, modules: Path | None) -> Path | None:
    """A local kernel's .config: next to it, at the top of its build tree
    (arch/*/boot/bzImage), as boot/config-RELEASE, or in its modules directory."""
    candidates = [image.parent / ".config", image.parent / f"config-{release}"]
    if len(image.parents) > 3:  # O/arch/x86/boot/bzImage -> O/.config
        candidates.append(image.parents[3] / ".config")
    if modules is not None:
        candidates.append(modules / "config")
    return next((c for c in candidates if c.is_file()), None)


def _install_kernel(image: Path, arch: Arch, dest: Path) -> None:
    """Copy the kernel; on x86 prefer its decompressed vmlinux when it can boot via PVH."""
    data = image.read_bytes()
    if arch.pvh_boot:
        elf = kimage.extract_vmlinux(data)
        if elf is not None and kimage.has_pvh_entry(elf):
            data = elf
    dest.write_bytes(data)


def _usrmerge(root: Path) -> None:
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


def _install_modules(modules_dir: Path, root: Path) -> list[str]:
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
    for line in _recipe_lines("modules.txt"):
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
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True,
                              check=True).stdout
    return data


def _modules_dep(modules_dir: Path) -> dict[str, list[str]]:
    dep_file = modules_dir / "modules.dep"
    deps: dict[str, list[str]] = {}
    for line in dep_file.read_text().splitlines():
        mod, _, rest = line.partition(":")
        # modules.dep lists the full dependency closure, nearest first; load in reverse.
        deps[mod] = list(reversed(rest.split()))
    return deps


def _depmod(modules_dir: Path) -> None:
    """Debian ships no modules.dep (its postinst makes one): run depmod on the unpacked tree."""
    parent = modules_dir.parent  # .../lib/modules or .../usr/lib/modules
    base = parent.parent.parent
    if parent.parent.parent.name == "usr":  # depmod -b wants BASE/lib/modules
        base = base.parent
        (base / "lib").mkdir(exist_ok=True)
        if not (base / "lib/modules").exists():
            (base / "lib/modules").symlink_to(parent)
    proc = subprocess.run([host_tool("depmod"), "-b", str(base), modules_dir.name],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (modules_dir / "modules.dep").exists():
        raise UsageError(f"depmod -b {base} {modules_dir.name} failed: "
                         f"{proc.stderr.strip() or 'no modules.dep'} (is kmod installed?)")


def host_tool(name: str) -> str:
    """A host program the image build runs; sbin counts even when not on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        package = HOST_TOOLS.get(name, name)
        raise UsageError(f"{name} not found: install {package} (./setup.sh does)")
    return found


# Host programs an image build needs, and the Debian package of each.
HOST_TOOLS = {"depmod": "kmod", "dpkg-deb": "dpkg", "apt-get": "apt", "zstd": "zstd"}


def _mod_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")


def _install_recipe(root: Path) -> None:
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
    names = binary[start + 1:end].decode("ascii", "replace").split("\0")
    return [n for n in names if n and "/" not in n and n != "busybox"]


def _make_keys(root: Path, out: Path) -> None:
    """A fresh client key and guest host key per image: root logs in by key only, and the
    harness pins the host key (no AutoAddPolicy)."""
    client = Ed25519PrivateKey.generate()
    (out / "id_ed25519").write_bytes(client.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    (out / "id_ed25519").chmod(0o600)
    client_pub = client.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (out / "id_ed25519.pub").write_text(client_pub + "\n")
    ssh = root / "root/.ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text(client_pub + "\n")
    root.joinpath("root").chmod(0o700)
    ssh.chmod(0o700)

    host = Ed25519PrivateKey.generate()
    seed = host.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption())
    pub = host.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    keydir = root / "etc/dropbear"
    keydir.mkdir(parents=True)
    # dropbear's own key format (bookworm's dropbear cannot read OpenSSH keys):
    # string "ssh-ed25519", string (seed || public key).
    (keydir / "dropbear_ed25519_host_key").write_bytes(
        _sshstr(b"ssh-ed25519") + _sshstr(seed + pub))
    (keydir / "dropbear_ed25519_host_key").chmod(0o600)
    host_pub = host.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    (out / "host_key.pub").write_text(host_pub + "\n")


def _sshstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


# -- cpio ------------------------------------------------------------------------------------


def write_cpio(root: Path, dest: Path) -> None:
    """An uncompressed newc archive of ``root`` with /dev/console added.

    Uncompressed on purpose: under TCG the kernel's inflate costs more than QEMU copying a
    few extra MiB. Owners are forced to root; device nodes need no privileges this way.
    """
    with dest.open("wb") as out:
        ino = 1
        for path in _walk(root):
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                data = os.readlink(path).encode()
            elif path.is_file():
                data = path.read_bytes()
            else:
                data = b""
            out.write(_cpio_entry(rel, st.st_mode, data, ino))
            ino += 1
        out.write(_cpio_entry("dev/console", 0o020600, b"", ino, rdev=(5, 1)))
        out.write(_cpio_entry("TRAILER!!!", 0, b"", 0))


def _walk(root: Path) -> Iterator[Path]:
    """Every path under root, parents first, without following symlinks."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def _cpio_entry(name: str, mode: int, data: bytes, ino: int,
                rdev: tuple[int, int] = (0, 0)) -> bytes:
    namez = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0)
    header = b"070701" + b"".join(b"%08x" % f for f in fields)
    return header + namez + _pad(len(header) + len(namez)) + data + _pad(len(data))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)
