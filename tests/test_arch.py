"""Unit tests for harness.arch (kernel sniffing, profiles) and harness.qemu.accel (KVM or TCG)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from harness.arch import ARM64, PPC64LE, S390X, X86_64, get_arch
from harness.errors import UsageError
from harness.qemu import accel
from harness.qemu.accel import choose_accel, kvm_problem


def bzimage() -> bytes:
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    return bytes(head)


def elf(machine: int, little: bool = True) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1 if little else 2, 1]) + bytes(9)
    rest = struct.pack("<HH" if little else ">HH", 2, machine)  # e_type, e_machine
    return ident + rest + bytes(0x200)


@pytest.fixture
def kernel(tmp_path: Path):
    def write(data: bytes) -> Path:
        path = tmp_path / "kernel"
        path.write_bytes(data)
        return path

    return write


def test_bzimage_is_x86_64(kernel) -> None:
    X86_64.check_kernel(kernel(bzimage()))


def test_arm64_image_and_s390x_bzimage_by_their_magic(kernel) -> None:
    image = bytearray(0x400)
    image[0x38:0x3C] = b"ARM\x64"  # Debian's arm64 vmlinuz: an EFI-stub Image
    ARM64.check_kernel(kernel(bytes(image)))
    s390 = bytearray(0x10100)
    s390[0x10008:0x1000E] = b"S390EP"  # found beyond the first 64 KiB
    S390X.check_kernel(kernel(bytes(s390)))
    with pytest.raises(UsageError, match="s390x kernel, not arm64: pass --memhp-arch s390x"):
        ARM64.check_kernel(kernel(bytes(s390)))


def test_arch_profiles_name_their_own_devices() -> None:
    assert S390X.qemu_type("virtio-mem") == "virtio-mem-ccw"
    assert ARM64.qemu_type("virtio-mem") == X86_64.qemu_type("virtio-mem") == "virtio-mem-pci"
    assert PPC64LE.qemu_type("nvdimm") == "spapr-nvdimm"
    assert S390X.net_device.startswith("virtio-net-ccw") and S390X.default_qemu != "host"
    assert ARM64.firmware is not None and ARM64.firmware.package == "qemu-efi-aarch64"
    assert ARM64.lacking("s3", "tcg") and S390X.lacking("numa", "tcg")


def test_bzimage_for_ppc64le_names_the_arch_to_use(kernel) -> None:
    with pytest.raises(UsageError, match="x86_64 kernel, not ppc64le: pass --memhp-arch x86_64"):
        PPC64LE.check_kernel(kernel(bzimage()))


def test_little_endian_ppc64_elf_is_ppc64le(kernel) -> None:
    path = kernel(elf(21))
    PPC64LE.check_kernel(path)
    with pytest.raises(UsageError, match="--memhp-arch ppc64le"):
        X86_64.check_kernel(path)


def test_x86_64_elf_is_x86_64(kernel) -> None:
    path = kernel(elf(62))
    X86_64.check_kernel(path)
    with pytest.raises(UsageError, match="--memhp-arch x86_64"):
        PPC64LE.check_kernel(path)


def test_big_endian_ppc64_elf_is_refused(kernel) -> None:
    with pytest.raises(UsageError, match="big-endian"):
        PPC64LE.check_kernel(kernel(elf(21, little=False)))


@pytest.mark.parametrize("data", [random.Random(0).randbytes(0x300), b"\x7fELF", b"MZ"])
def test_unknown_bytes_are_refused(kernel, data: bytes) -> None:
    with pytest.raises(UsageError, match="not a kernel image this harness knows"):
        X86_64.check_kernel(kernel(data))


def test_missing_or_empty_kernel_is_refused(kernel, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="missing or empty"):
        X86_64.check_kernel(tmp_path / "nothing")
    with pytest.raises(UsageError, match="missing or empty"):
        X86_64.check_kernel(kernel(b""))


def test_get_arch_known_and_unknown() -> None:
    assert get_arch("x86_64") is X86_64
    assert get_arch("ppc64le") is PPC64LE
    assert get_arch("arm64").machine.startswith("virt")
    with pytest.raises(UsageError, match="unknown arch 'riscv64': use one of x86_64, ppc64le, "):
        get_arch("riscv64")


def test_flavour_maps_spec_suffix_to_debian_flavour() -> None:
    assert X86_64.flavour(None) == "amd64"
    assert X86_64.flavour("") == "amd64"
    assert X86_64.flavour("rt") == "rt-amd64"
    assert X86_64.flavour("cloud") == "cloud-amd64"
    assert PPC64LE.flavour(None) == "powerpc64le"
    assert PPC64LE.flavour("64k") == "powerpc64le-64k"
    with pytest.raises(UsageError, match=r"'/rt' does not exist for ppc64le \(known: 64k\)"):
        PPC64LE.flavour("rt")


# -- accel -----------------------------------------------------------------------------------

NO_VIRT = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae hypervisor\n"
VMX = "processor\t: 0\nflags\t\t: fpu vme de pse vmx tsc\n"


@pytest.fixture
def x86_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "host_arch", lambda: X86_64)
    monkeypatch.setattr(accel.os, "access", lambda path, mode: True)
    monkeypatch.delenv(accel.ENV, raising=False)


def test_kvm_problem_without_vmx_or_svm(x86_host: None) -> None:
    assert "no vmx/svm" in kvm_problem(X86_64, cpuinfo=NO_VIRT)


def test_kvm_problem_none_with_vmx(x86_host: None) -> None:
    assert kvm_problem(X86_64, cpuinfo=VMX) is None
    assert kvm_problem(X86_64, cpuinfo=VMX.replace("vmx", "svm")) is None


def test_kvm_problem_other_arch_guest(x86_host: None) -> None:
    assert kvm_problem(PPC64LE, cpuinfo=VMX) == "host is x86_64, guest is ppc64le"


def test_kvm_problem_without_dev_kvm(x86_host: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel.os, "access", lambda path, mode: False)
    assert "/dev/kvm" in kvm_problem(X86_64, cpuinfo=VMX)


def test_choose_accel_tcg_requested(x86_host: None) -> None:
    got = choose_accel(X86_64, "tcg")
    assert got.name == "tcg"
    assert got.qemu_args(X86_64) == ["-accel", "tcg,thread=single", "-cpu", "max"]


def test_choose_accel_rejects_unknown(x86_host: None) -> None:
    with pytest.raises(UsageError, match="'bogus' is not one of auto, kvm, tcg"):
        choose_accel(X86_64, "bogus")


def test_choose_accel_env_used_when_not_requested(
    x86_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(accel.ENV, "tcg")
    assert choose_accel(X86_64, None).name == "tcg"
    assert choose_accel(X86_64).reason == "requested"


def test_choose_accel_auto_falls_back_to_tcg_with_reason(
    x86_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accel, "kvm_problem", lambda arch: "no kvm here")
    assert choose_accel(X86_64, "auto") == accel.Accel("tcg", "no kvm here")
    with pytest.raises(UsageError, match="no kvm here; use --memhp-accel tcg"):
        choose_accel(X86_64, "kvm")


def test_choose_accel_auto_uses_working_kvm(
    x86_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accel, "kvm_problem", lambda arch: None)
    got = choose_accel(X86_64)
    assert got.name == "kvm"
    assert got.qemu_args(X86_64) == ["-accel", "kvm", "-cpu", "host"]
