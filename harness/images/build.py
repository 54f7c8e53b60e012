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
from harness.images.kernel import debian_kernel_parts, install_kernel, local_config
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
    problems: list[str] = []
    for source in sources:
        try:
            image = _cached_or_built(spec, arch, source, userspace, apt)
        except ArchiveError as exc:
            problems += [p for p in str(exc).split("; ") if p not in problems]
            continue
        if problems:
            progress.note(
                f"{spec} ({arch.name}): using {image.kernel_package}; newer builds "
                f"could not be had: {'; '.join(problems)}"
            )
        return image
    return _cached_instead(spec, arch, "; ".join(problems))


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
        kernel_debs = (
            apt.download(source.packages) if isinstance(source, specs.DebianKernel) else []
        )
        with progress(f"image: building {arch.name} {spec}"):
            image = _build(spec, arch, source, kernel_debs, userspace, apt, dest)
        if not isinstance(source, specs.DebianKernel):
            _prune_superseded(spec, arch, dest)
        return image


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
    kernel_debs: list[Path],
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
        pinned: tuple[Package, ...] = ()
        if isinstance(source, specs.DebianKernel):
            tree = tmp / "kernel"
            for deb in kernel_debs:
                extract(deb, tree)
            image, release, modules_dir, config = debian_kernel_parts(tree, arch, source)
            described = str(source.package)
            pinned = source.packages
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
            "kernel_debs": [dataclasses.asdict(p) for p in pinned],
            "userspace_debs": [dataclasses.asdict(p) for p in userspace],
        }
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        out.rename(dest)
    return Image.load(dest)


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
