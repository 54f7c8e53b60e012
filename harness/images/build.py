"""Build (or reuse) a guest image: a kernel plus an initramfs with busybox, dropbear and the
scenario modules.

The recipe (init script, module and package lists) lives in ``guest-images/``. Images are
cached by a hash of everything that goes into them, the code that shapes them included; a
second build of the same inputs is a no-op. Nothing here needs root beyond what apt itself
does: packages are unpacked with ``dpkg-deb -x``, device nodes exist only as cpio headers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from harness import cache
from harness.arch import Arch
from harness.errors import ArchiveError, UsageError
from harness.images import specs
from harness.images.apt import USERSPACE_SUITE, AptCache, Package, file_sha256
from harness.images.cpio import write_cpio
from harness.images.image import IMAGE_FILES, Image
from harness.images.kernel import (
    KernelFiles,
    debian_kernel_files,
    install_kernel,
    local_config,
)
from harness.images.keys import make_keys
from harness.images.modules import depmod, install_modules
from harness.images.rootfs import extract, install_recipe, recipe_list, usrmerge
from harness.progress import progress
from harness.resources import RECIPE_DIR

if TYPE_CHECKING:
    from harness.images.lockfile import Pinned

# The code that shapes an image's contents: a change to any of it gives new images.
SHAPING_MODULES = ("build", "cpio", "image", "kernel", "keys", "modules", "rootfs", "vmlinux")


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
            sources: list[specs.KernelSource] = [pinned.kernel]
            userspace = list(pinned.userspace)
        else:
            if spec.startswith("debian:"):
                apt.update()
            sources = specs.candidates(spec, arch, apt)
            userspace = apt_userspace(apt)
    except ArchiveError as exc:
        return _cached_instead(spec, arch, str(exc))
    failures: list[tuple[specs.KernelSource, str]] = []
    for source in sources:
        try:
            image = _cached_or_built(spec, arch, source, userspace, apt)
        except ArchiveError as exc:
            failures.append((source, str(exc)))
            continue
        if failures:
            progress.note(
                f"{spec} ({arch.name}): using {image.kernel_package}; newer builds "
                f"could not be had: {_told(failures)}"
            )
        return image
    return _cached_instead(spec, arch, _told(failures))


def _told(failures: list[tuple[specs.KernelSource, str]]) -> str:
    """Why builds could not be had, each reason once: a download problem repeats for every
    copy of a build, and older builds often lack what the newest lacks (a line whose modules
    no index lists): those are named by their version only."""
    said: list[str] = []
    groups: dict[str, tuple[str, list[str]]] = {}  # generic reason -> (first told, older)
    for source, text in failures:
        new = [part for part in text.split("; ") if part not in said]
        said += new
        if not new:
            continue
        told = "; ".join(new)
        key, version = told, source.spec
        if isinstance(source, specs.DebianKernel):
            version, upstream = source.package.version, source.package.upstream
            key = told.replace(version, "{version}").replace(upstream, "{upstream}")
        if key in groups:
            groups[key][1].append(version)
        else:
            groups[key] = (told, [])
    return "; ".join(
        told + (f"; the same for {', '.join(older)}" if older else "")
        for told, older in groups.values()
    )


def _cached_or_built(
    spec: str, arch: Arch, source: specs.KernelSource, userspace: list[Package], apt: AptCache
) -> Image:
    key = image_key(arch, source, userspace)
    dest = cache.path("images", f"{arch.name}-{_slug(spec)}-{key[:16]}")
    image = _intact(dest)
    if image is not None:
        return image
    with _locked(dest.parent / f"{dest.name}.lock"):
        image = _intact(dest)  # another worker built it meanwhile
        if image is not None:
            return image
        kernel_debs: list[tuple[Package, Path]] = []
        left_out: tuple[specs.LeftOut, ...] = ()
        if isinstance(source, specs.DebianKernel):
            kernel_debs, left_out = _download_build(source, apt)
        with progress(f"image: building {arch.name} {spec}"):
            image = _build(spec, arch, source, kernel_debs, left_out, userspace, apt, dest)
        if not isinstance(source, specs.DebianKernel):
            _prune_superseded(spec, arch, dest)
        return image


def _download_build(
    source: specs.DebianKernel, apt: AptCache
) -> tuple[list[tuple[Package, Path]], tuple[specs.LeftOut, ...]]:
    """Every package of the build that downloads, and the resolution's left-outs plus those
    that did not download (whether the build still has what a guest needs is read from the
    files of the others). ArchiveError only when none downloaded."""
    got: list[tuple[Package, Path]] = []
    failed: list[specs.LeftOut] = []
    for pkg in source.packages:
        try:
            got.append((pkg, apt.fetch_any(pkg)))
        except ArchiveError as exc:
            failed.append(specs.LeftOut(str(pkg), str(exc).removeprefix(f"{pkg}: "), True))
    if not got:
        raise ArchiveError("; ".join(map(str, failed)))
    return got, (*source.left_out, *failed)


def _prune_superseded(spec: str, arch: Arch, keep: Path) -> None:
    """A local kernel (build:DIR, PATH) was rebuilt: its older images, and the saved boots
    made from them, describe a kernel that no longer exists (a bisect or a self-check
    rebuilds the same build:DIR dozens of times)."""
    for meta in cache.path("images").glob(f"{arch.name}-{_slug(spec)}-*/image.json"):
        old = meta.parent
        if old == keep:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(meta.read_text()).get("spec") != spec:
                continue
            for saved in cache.path("snapshots").glob(f"{arch.name}-{old.name}-*"):
                saved.unlink(missing_ok=True)
            shutil.rmtree(old, ignore_errors=True)


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
    progress.note(
        f"{spec} ({arch.name}): the archive gave nothing ({problem}); using the "
        f"cached image of {image.kernel_package}, built {age:.1f} days ago"
    )
    return image


def apt_userspace(apt: AptCache) -> list[Package]:
    if not any(apt.index().values()):
        apt.update()
    # Only shared libraries are followed: maintainer-script dependencies (dpkg, perl,
    # init-system-helpers) have no place in an initramfs.
    return apt.closure(
        recipe_list("packages.txt"),
        USERSPACE_SUITE,
        follow=lambda name: name.startswith(("lib", "zlib")),
    )


def _build(
    spec: str,
    arch: Arch,
    source: specs.KernelSource,
    kernel_debs: list[tuple[Package, Path]],
    left_out: tuple[specs.LeftOut, ...],
    userspace: list[Package],
    apt: AptCache,
    dest: Path,
) -> Image:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp_s:
        tmp = Path(tmp_s)
        out = tmp / "out"
        root = tmp / "root"
        out.mkdir()
        root.mkdir()
        found_in: dict[str, str] = {}
        if isinstance(source, specs.DebianKernel):
            image, release, files = _unpack_build(
                tmp / "kernel", arch, source, kernel_debs, left_out
            )
            modules_dir, config, found_in = files.modules, files.config, dict(files.found_in)
            described = str(source.package)
        else:
            image, modules_dir = source.image, source.modules
            release = modules_dir.name if modules_dir else "unknown"
            config = local_config(image, release, modules_dir)
            described = str(image)
        arch.check_kernel(image)
        install_kernel(image, arch, out / "kernel")
        if config:
            shutil.copyfile(config, out / "config")
        for deb in apt.download(userspace):
            extract(deb, root)
        usrmerge(root)
        if modules_dir and not any(modules_dir.rglob("*.ko*")):
            modules_dir = None  # everything built in (a CONFIG_MODULES=n kernel has no .ko)
        if modules_dir and not (modules_dir / "modules.dep").exists():
            if not isinstance(source, specs.DebianKernel):  # never write into the user's tree
                raise UsageError(
                    f"{modules_dir} has no modules.dep: install the modules with "
                    "make modules_install INSTALL_MOD_PATH=DIR (runs depmod)"
                )
            depmod(modules_dir)
        loaded = install_modules(modules_dir, root) if modules_dir else []
        install_recipe(root)
        make_keys(root, out)
        write_cpio(root, out / "initramfs.cpio")
        meta = {
            "arch": arch.name,
            "spec": spec,
            "release": release,
            "kernel_package": described,
            "modules": loaded,
            "built": time.time(),
            "files": {
                name: file_sha256(out / name) for name in IMAGE_FILES if (out / name).is_file()
            },
            "kernel_files": found_in,
            "left_out": [str(dep) for dep in left_out],
            "kernel_debs": [dataclasses.asdict(p) for p, _ in kernel_debs],
            "userspace_debs": [dataclasses.asdict(p) for p in userspace],
        }
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        out.rename(dest)
    return Image.load(dest)


def _unpack_build(
    tree: Path,
    arch: Arch,
    source: specs.DebianKernel,
    debs: list[tuple[Package, Path]],
    left_out: tuple[specs.LeftOut, ...],
) -> tuple[Path, str, KernelFiles]:
    """The kernel, its release, and all a Debian build holds for a guest, from whichever of
    its packages hold it; ArchiveError naming what a guest needs and none of them holds."""
    owners = {path: pkg.name for pkg, deb in debs for path in extract(deb, tree)}
    files = debian_kernel_files(tree, arch, owners)
    missing = files.missing(arch)
    if missing or files.image is None or files.release is None:
        gaps = [str(dep) for dep in left_out if dep.of_build]
        raise ArchiveError(
            f"{source.package}: no {' and no '.join(missing)} in "
            f"{', '.join(pkg.name for pkg, _ in debs)}"
            + (f" (left out: {', '.join(gaps)})" if gaps else "")
        )
    held = ", ".join(f"{what} {where}" for what, where in files.found_in)
    progress.note(
        f"{source.spec} ({arch.name}): {source.package}: {held}"
        + (f"; left out: {specs.describe(left_out)}" if left_out else "")
    )
    return files.image, files.release, files


# -- inputs and cache key --------------------------------------------------------------------


def image_key(arch: Arch, source: specs.KernelSource, userspace: list[Package]) -> str:
    h = hashlib.sha256()
    h.update(arch.name.encode())
    # The recipe and the code that applies it are inputs too.
    code = [Path(__file__).with_name(f"{m}.py") for m in SHAPING_MODULES]
    for path in [*sorted(RECIPE_DIR.iterdir()), *code]:
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    if isinstance(source, specs.DebianKernel):
        for pkg in source.packages:
            h.update(pkg.sha256.encode())
    else:
        h.update(file_sha256(source.image).encode())
        if source.modules:
            for mod in sorted(source.modules.rglob("*")):
                if mod.is_file():
                    st = mod.stat()
                    h.update(
                        f"{mod.relative_to(source.modules)}:{st.st_size}:{st.st_mtime_ns}".encode()
                    )
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


# -- cpio ------------------------------------------------------------------------------------
