"""The kernel half of an image: which unpacked files of a Debian build are its kernel, its
config and its modules (told by what they are, whichever package holds them and whatever
they are called), where a local kernel keeps its config, and which file QEMU boots (x86:
the decompressed vmlinux through its PVH entry when it has one)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.arch import KERNEL_HEAD, Arch, kernel_kind
from harness.images import vmlinux

# Where Debian's packages have put a kernel and its config: boot/ (up to 6.x) and the
# release's own directory (7.x: usr/lib/modules/REL/vmlinuz and config).
KERNEL_DIRS = ("boot", "usr/lib/modules/*", "lib/modules/*")


@dataclass(frozen=True)
class KernelFiles:
    """What an unpacked Debian build holds for a guest; None where it holds nothing."""

    image: Path | None
    release: str | None
    config: Path | None
    modules: Path | None  # lib/modules/REL with the .ko files
    # "kernel" / "config" / "modules" -> "PATH (PACKAGE)": the image's record of its parts.
    found_in: tuple[tuple[str, str], ...] = ()

    def missing(self, arch: Arch) -> list[str]:
        """What a guest needs and the build lacks: a kernel, its config, and its modules
        unless the config has none (CONFIG_MODULES unset)."""
        out = [] if self.image else [f"{arch.name} kernel"]
        out += [] if self.config else ["kernel config"]
        if self.modules is None and (self.config is None or _modular(self.config)):
            out.append(f"modules for {self.release}" if self.release else "kernel modules")
        return out


def debian_kernel_files(tree: Path, arch: Arch, owners: Mapping[str, str]) -> KernelFiles:
    """The kernel, release, config and modules in ``tree`` (the build's packages unpacked;
    ``owners`` maps each unpacked path to its package)."""
    image, release = _find_kernel(tree, arch) or (None, None)
    config = _find_config(tree, release)
    modules, ko = next(
        ((d, ko) for d in _module_dirs(tree, release) if (ko := _ko(d)) is not None),
        (None, None),
    )

    def where(path: Path, owned: Path) -> str:
        rel = owned.relative_to(tree).as_posix()
        return f"{path.relative_to(tree)} ({owners.get(rel, 'unknown package')})"

    found_in = tuple(
        (what, where(path, owned))
        for what, path, owned in (
            ("kernel", image, image),
            ("config", config, config),
            ("modules", modules, ko),
        )
        if path is not None and owned is not None
    )
    return KernelFiles(image, release, config, modules, found_in)


def _module_dirs(tree: Path, release: str | None) -> list[Path]:
    """Where the modules of ``release`` would be (any release's when it is unknown)."""
    bases = (tree / "usr/lib/modules", tree / "lib/modules")
    if release:
        return [base / release for base in bases]
    return [d for base in bases for d in (sorted(base.iterdir()) if base.is_dir() else [])]


def _candidates(tree: Path) -> Iterator[Path]:
    for pattern in KERNEL_DIRS:
        for directory in sorted(tree.glob(pattern)):
            for path in sorted(directory.iterdir()) if directory.is_dir() else []:
                if path.is_file() and not path.is_symlink():
                    yield path


def _head(path: Path, size: int = KERNEL_HEAD) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def _find_kernel(tree: Path, arch: Arch) -> tuple[Path, str] | None:
    """The first file that is a kernel for ``arch`` (bzImage header, ELF machine), and its
    release as the kernel itself states it (else as its path does)."""
    for path in _candidates(tree):
        if kernel_kind(_head(path)) == arch.name:
            release = kernel_release(path) or _release_of_path(path)
            if release:
                return path, release
    return None


def kernel_release(path: Path) -> str | None:
    """``uname -r`` of a kernel image: the x86 setup header's kernel_version string, else
    the "Linux version REL (" banner of an uncompressed kernel."""
    data = path.read_bytes()
    if data[0x202:0x206] == b"HdrS":
        offset = int.from_bytes(data[0x20E:0x210], "little")
        if offset:  # boot protocol: a string at 0x200 + kernel_version
            words = data[0x200 + offset : 0x200 + offset + 256].split(b"\0")[0].split()
            return words[0].decode("ascii", "replace") if words else None
        return None
    m = re.search(rb"Linux version (\S+) \(", data)
    return m.group(1).decode("ascii", "replace") if m else None


def _release_of_path(path: Path) -> str | None:
    if path.parent.parent.name == "modules":  # .../modules/REL/vmlinuz
        return path.parent.name
    return path.name.split("-", 1)[1] if "-" in path.name else None  # boot/vmlinuz-REL


def _find_config(tree: Path, release: str | None) -> Path | None:
    """A kernel .config ("# Linux/x86 6.18.15 Kernel Configuration" in its head), the one
    placed for ``release`` first."""
    configs = [p for p in _candidates(tree) if b" Kernel Configuration" in _head(p, 512)]
    return min(configs, key=lambda p: (release or "") not in p.as_posix(), default=None)


def _ko(directory: Path) -> Path | None:
    """One kernel module under ``directory``, if it holds any."""
    return next(directory.rglob("*.ko*"), None) if directory.is_dir() else None


def _modular(config: Path) -> bool:
    return re.search(r"^CONFIG_MODULES=y$", config.read_text(errors="replace"), re.M) is not None


def local_config(image: Path, release: str, modules: Path | None) -> Path | None:
    """A local kernel's .config: next to it, at the top of its build tree
    (arch/*/boot/bzImage), as boot/config-RELEASE, or in its modules directory."""
    candidates = [image.parent / ".config", image.parent / f"config-{release}"]
    if len(image.parents) > 3:  # O/arch/x86/boot/bzImage -> O/.config
        candidates.append(image.parents[3] / ".config")
    if modules is not None:
        candidates.append(modules / "config")
    return next((c for c in candidates if c.is_file()), None)


def install_kernel(image: Path, arch: Arch, dest: Path) -> None:
    """Copy the kernel; on x86 prefer its decompressed vmlinux when it can boot via PVH, and
    keep the bzImage beside it (bzImage): a guest booted through PVH does not come back from
    S3 (the wakeup boots it anew), one the firmware booted does."""
    data = image.read_bytes()
    if arch.pvh_boot:
        elf = vmlinux.extract_vmlinux(data)
        if elf is not None and vmlinux.has_pvh_entry(elf):
            dest.with_name("bzImage").write_bytes(data)
            data = elf
    dest.write_bytes(data)
