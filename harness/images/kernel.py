"""The kernel half of an image: where a Debian package keeps its kernel, modules and
config, where a local kernel keeps its config, and which file QEMU boots (x86: the
decompressed vmlinux through its PVH entry when it has one)."""

from __future__ import annotations

from pathlib import Path

from harness.arch import Arch
from harness.errors import ArchiveError
from harness.images import specs, vmlinux


def debian_kernel_parts(
    tree: Path, arch: Arch, source: specs.DebianKernel
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
            tree.glob(f"lib/modules/*/{name}")
        )
        if not found:  # e.g. a metapackage the resolution should not have taken
            raise ArchiveError(f"{source.package}: no {name} in the package")
        image = found[0]
        release = image.parent.name
        config = image.parent / "config"
    modules = next(
        (
            p
            for p in (tree / "lib/modules" / release, tree / "usr/lib/modules" / release)
            if p.is_dir()
        ),
        None,
    )
    return image, release, modules, config if config.exists() else None


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
    """Copy the kernel; on x86 prefer its decompressed vmlinux when it can boot via PVH."""
    data = image.read_bytes()
    if arch.pvh_boot:
        elf = vmlinux.extract_vmlinux(data)
        if elf is not None and vmlinux.has_pvh_entry(elf):
            data = elf
    dest.write_bytes(data)
