"""Unit tests for harness.images.apt, .specs and .kernel: Debian indexes, versions, specs,
a build's packages and its kernel files (no apt runs)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.arch import PPC64LE, X86_64
from harness.errors import UsageError
from harness.images.apt import (
    AptCache,
    Package,
    VersionKey,
    compare_versions,
    depends_names,
    parse_depends,
    parse_packages,
)
from harness.images.kernel import debian_kernel_files, kernel_release
from harness.images.specs import (
    HOST_TOOL,
    LeftOut,
    describe,
    parse_debian_spec,
    resolve_debian,
    same_build,
)


def pkg(
    name: str, version: str, suite: str = "bookworm", depends: str = "", arch: str = "amd64"
) -> Package:
    return Package(
        name=name,
        version=version,
        arch=arch,
        suite=suite,
        filename=f"pool/main/x/{name}/{name}_{version}_{arch}.deb",
        sha256="0" * 64,
        depends=depends,
        source=name,
    )


def sign(n: int) -> int:
    return (n > 0) - (n < 0)


# -- version comparison ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("6.12.117-1", "6.12.117-1~deb12u1", 1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.1", "2.0", 1),
        ("2.30", "2.3", 1),
        ("1.0", "1.0-0", 0),
        ("1.0+b1", "1.0", 1),
        ("6.1.158-1", "6.1.99-1", 1),
        ("1.0", "1.0", 0),
        ("1.0~~", "1.0~", -1),
        ("1.0a", "1.0+", -1),  # letters sort before non-letters
        ("0:1.2", "1.2", 0),
        ("1.002", "1.2", 0),
    ],
)
def test_compare_versions_follows_dpkg_ordering(a: str, b: str, expected: int) -> None:
    assert sign(compare_versions(a, b)) == expected
    assert sign(compare_versions(b, a)) == -expected


def test_version_key_sorts_like_dpkg() -> None:
    versions = ["6.12.117-1", "1:0.1", "6.1.99-1", "6.12.117-1~deb12u1", "6.1.158-1"]
    ordered = sorted(versions, key=VersionKey)
    assert ordered == ["6.1.99-1", "6.1.158-1", "6.12.117-1~deb12u1", "6.12.117-1", "1:0.1"]
    assert max(versions, key=VersionKey) == "1:0.1"


def test_version_key_equality_ignores_spelling() -> None:
    assert VersionKey("1.0") == VersionKey("1.0-0")
    assert VersionKey("1.0") != VersionKey("1.1")
    assert VersionKey("1.0") != "1.0"


def test_version_key_is_unhashable_because_equal_keys_differ_in_spelling() -> None:
    with pytest.raises(TypeError):
        hash(VersionKey("1.0"))


# -- Packages index --------------------------------------------------------------------------

PACKAGES = """\
Package: dropbear-bin
Source: dropbear (2022.83-1+deb12u1)
Version: 2022.83-1+deb12u1
Architecture: amd64
Pre-Depends: init-system-helpers (>= 1.54~)
Depends: libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), zlib1g (>= 1:1.1.4)
Description: lightweight SSH2 server and client
 dropbear is a SSH 2 server and client designed to be small enough
 .
 Source: this continuation line must not become a field
Filename: pool/main/d/dropbear/dropbear-bin_2022.83-1+deb12u1_amd64.deb
SHA256: abc123

Package: busybox-static
Version: 1:1.35.0-4
Architecture: amd64
Filename: pool/main/b/busybox/busybox-static_1.35.0-4_amd64.deb
SHA256: def456
"""


def test_parse_packages_reads_both_stanzas() -> None:
    first, second = parse_packages(PACKAGES, "bookworm")
    assert first == Package(
        name="dropbear-bin",
        version="2022.83-1+deb12u1",
        arch="amd64",
        suite="bookworm",
        filename="pool/main/d/dropbear/dropbear-bin_2022.83-1+deb12u1_amd64.deb",
        sha256="abc123",
        depends="init-system-helpers (>= 1.54~), libc6 (>= 2.34), libcrypt1 (>= 1:4.1.0), "
        "zlib1g (>= 1:1.1.4)",
        source="dropbear",
    )
    assert second.name == "busybox-static"
    assert second.version == "1:1.35.0-4"
    assert second.depends == ""
    assert second.source == "busybox-static"  # no Source field: the package itself


def test_parse_packages_skips_stanzas_without_package() -> None:
    assert list(parse_packages("Foo: bar\n\n\n", "trixie")) == []


def test_depends_names_takes_first_alternative_without_versions_or_arch() -> None:
    deps = "libc6 (>= 2.34), libfoo:any | libbar, zlib1g (>= 1:1.1.4), libx [amd64]"
    assert depends_names(deps) == ["libc6", "libfoo", "zlib1g", "libx"]
    assert depends_names("") == []


def test_package_upstream_drops_epoch_and_revision() -> None:
    assert pkg("linux", "6.12.117-1~deb12u1").upstream == "6.12.117"
    assert pkg("busybox", "1:1.35.0-4").upstream == "1.35.0"
    assert pkg("native", "2.0").upstream == "2.0"
    assert pkg("x", "1.0").deb_name == "x_1.0_amd64.deb"


# -- AptCache over a hand-built index --------------------------------------------------------


@pytest.fixture
def apt(tmp_path: Path) -> AptCache:
    cache = AptCache(tmp_path, "amd64")
    cache._index = {
        "bookworm": {
            "dropbear": [pkg("dropbear", "2022.83-1", depends="dropbear-bin (= 2022.83-1)")],
            "dropbear-bin": [
                pkg("dropbear-bin", "2022.83-1", depends="libc6 (>= 2.34), libz:any | libother")
            ],
            "libc6": [
                pkg("libc6", "2.36-9"),
                pkg("libc6", "2.36-9+deb12u10"),
                pkg("libc6", "2.36-9+deb12u4"),
            ],
            "libz": [pkg("libz", "1.2", depends="libc6")],
            "broken": [pkg("broken", "1", depends="libmissing (>= 2)")],
        },
        "trixie": {"libc6": [pkg("libc6", "2.41-12", suite="trixie")]},
    }
    return cache


def test_newest_picks_highest_version_in_suite(apt: AptCache) -> None:
    assert apt.newest("libc6", "bookworm").version == "2.36-9+deb12u10"
    assert apt.newest("libc6", "trixie").version == "2.41-12"


def test_newest_missing_package_names_it(apt: AptCache) -> None:
    with pytest.raises(UsageError, match=r"nothere .*bookworm"):
        apt.newest("nothere", "bookworm")


def test_closure_follows_first_alternatives_once(apt: AptCache) -> None:
    names = [p.name for p in apt.closure(["dropbear"], "bookworm")]
    assert sorted(names) == ["dropbear", "dropbear-bin", "libc6", "libz"]
    assert len(names) == len(set(names))


def test_closure_missing_dependency_raises_naming_it(apt: AptCache) -> None:
    with pytest.raises(UsageError, match="libmissing"):
        apt.closure(["broken"], "bookworm")


# -- kernels: debian specs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("debian:6.12", ("6.12", None)),
        ("debian:6.12/rt", ("6.12", "rt")),
        ("debian:6.1/64k", ("6.1", "64k")),
    ],
)
def test_parse_debian_spec_accepts_line_and_flavour(spec: str, parsed: tuple) -> None:
    assert parse_debian_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "debian:6",
        "debian:6.12.1",
        "debian:",
        "6.12",
        "debian:6.12/",
        "debian:6.12/rt/x",
        "debian:latest",
    ],
)
def test_parse_debian_spec_rejects_with_expected_form(spec: str) -> None:
    with pytest.raises(UsageError, match=r"debian:X\.Y\[/flavour\]"):
        parse_debian_spec(spec)


class FakeApt:
    def __init__(self, packages: list[Package]) -> None:
        self.packages = packages

    def find(self, match: Callable[[str], object]) -> list[Package]:
        return [p for p in self.packages if match(p.name)]


KERNELS = [
    pkg("linux-image-6.1.0-28-amd64", "6.1.119-1", "bookworm"),
    pkg("linux-image-6.1.0-41-amd64", "6.1.158-1", "bookworm-security"),
    pkg("linux-image-6.1.0-41-amd64-dbg", "6.1.999-1", "bookworm-security"),
    pkg("linux-image-6.12.117+deb12-amd64", "6.12.117-1~deb12u1", "bookworm-security"),
    pkg("linux-image-6.12.117+deb13-amd64", "6.12.117-1", "trixie-security"),
    pkg("linux-image-6.12.57+deb13-amd64", "6.12.57-1", "trixie"),
    pkg("linux-image-6.12.117+deb13-rt-amd64", "6.12.117-1", "trixie-security"),
    pkg("linux-image-6.12.117+deb13-amd64-dbg", "6.12.999-1", "trixie-security"),
    pkg("linux-image-amd64", "6.12.999-1", "trixie-security"),
    pkg("linux-image-6.12.117+deb13-powerpc64le", "6.12.117-1", "trixie-security", arch="ppc64el"),
    pkg(
        "linux-image-6.12.117+deb13-powerpc64le-64k",
        "6.12.117-1",
        "trixie-security",
        arch="ppc64el",
    ),
]


def resolve(spec: str, arch: object = X86_64, packages: list[Package] = KERNELS) -> Package:
    return resolve_debian(spec, arch, FakeApt(packages))  # type: ignore[arg-type]


def test_resolve_debian_picks_newest_of_line_across_suites() -> None:
    got = resolve("debian:6.12")
    assert (got.name, got.version, got.suite) == (
        "linux-image-6.12.117+deb13-amd64",
        "6.12.117-1",
        "trixie-security",
    )


def test_resolve_debian_does_not_take_6_12_for_line_6_1() -> None:
    got = resolve("debian:6.1")
    assert (got.name, got.version) == ("linux-image-6.1.0-41-amd64", "6.1.158-1")


def test_resolve_debian_line_6_1_ignores_6_12_even_if_newest() -> None:
    only_612 = [p for p in KERNELS if p.upstream.startswith("6.12")]
    with pytest.raises(UsageError, match=r"'debian:6\.1'"):
        resolve("debian:6.1", packages=only_612)


def test_resolve_debian_respects_flavour() -> None:
    assert resolve("debian:6.12/rt").name == "linux-image-6.12.117+deb13-rt-amd64"
    assert resolve("debian:6.12", PPC64LE).name == "linux-image-6.12.117+deb13-powerpc64le"
    assert resolve("debian:6.12/64k", PPC64LE).name == "linux-image-6.12.117+deb13-powerpc64le-64k"


def test_resolve_debian_prefers_unsigned_on_equal_version() -> None:
    signed = pkg("linux-image-6.12.117+deb13-amd64", "6.12.117-1", "trixie-security")
    unsigned = pkg("linux-image-6.12.117+deb13-amd64-unsigned", "6.12.117-1", "trixie-security")
    assert resolve("debian:6.12", packages=[unsigned, signed]) is unsigned
    assert resolve("debian:6.12", packages=[signed, unsigned]) is unsigned


def test_resolve_debian_no_match_raises() -> None:
    with pytest.raises(UsageError, match=r"no Debian amd64 kernel package matches 'debian:5\.10'"):
        resolve("debian:5.10")


def test_resolve_debian_unknown_flavour_raises() -> None:
    with pytest.raises(UsageError, match=r"flavour '/64k'.*known: cloud, rt"):
        resolve("debian:6.12/64k")


# -- a build's packages: its own parts and what is left out ----------------------------------


def test_parse_depends_reads_relation_and_version_of_the_first_alternative() -> None:
    deps = parse_depends(
        "linux-base (>= 4.12~), dracut | initramfs-tools (>= 0.120), kmod, "
        "linux-base-6.18.5+deb13-amd64 (= 6.18.5-1~bpo13+1), libx:any [amd64]"
    )
    assert [(d.name, d.relation, d.version) for d in deps] == [
        ("linux-base", ">=", "4.12~"),
        ("dracut", "", ""),
        ("kmod", "", ""),
        ("linux-base-6.18.5+deb13-amd64", "=", "6.18.5-1~bpo13+1"),
        ("libx", "", ""),
    ]
    assert str(deps[1]) == "dracut | initramfs-tools (>= 0.120)"


SPLIT_V = "7.2.6-1~bpo13+1"
SPLIT_IMAGE = pkg(
    "linux-image-7.2.6+deb13-amd64",
    SPLIT_V,
    "trixie-backports",
    depends=f"linux-base (>= 4.17~), linux-binary-7.2.6+deb13-amd64 (= {SPLIT_V}), "
    f"linux-modules-7.2.6+deb13-amd64 (= {SPLIT_V})",
)


def index(*packages: Package) -> AptCache:
    cache = AptCache(Path("/nonexistent"), "amd64")
    cache._index = {}
    for p in packages:
        cache._index.setdefault(p.suite, {}).setdefault(p.name, []).append(p)
    return cache


def test_same_build_follows_exact_dependencies_and_says_what_it_left_out() -> None:
    base = pkg("linux-base-7.2.6+deb13-amd64", SPLIT_V, "trixie-backports")
    binary = pkg(
        "linux-binary-7.2.6+deb13-amd64",
        SPLIT_V,
        "trixie-backports",
        depends=f"linux-base-7.2.6+deb13-amd64 (= {SPLIT_V})",
    )
    # linux-modules-* is in no index: left out, for the build to say whether it mattered.
    parts, left_out = same_build(SPLIT_IMAGE, index(SPLIT_IMAGE, binary, base))

    assert parts == (binary, base)
    assert [str(d) for d in left_out] == [
        "linux-base (>= 4.17~): not part of this build (a tool for installing it on a host)",
        f"linux-modules-7.2.6+deb13-amd64 (= {SPLIT_V}): no index lists it",
    ]
    assert [d.of_build for d in left_out] == [False, True]


def test_same_build_takes_a_part_another_suite_lists() -> None:
    binary = pkg("linux-binary-7.2.6+deb13-amd64", SPLIT_V, "trixie")
    modules = pkg("linux-modules-7.2.6+deb13-amd64", SPLIT_V, "trixie-backports")
    parts, _ = same_build(SPLIT_IMAGE, index(SPLIT_IMAGE, binary, modules))
    assert parts == (binary, modules)


def test_describe_names_each_missing_part_and_the_host_tools_once() -> None:
    _, left_out = same_build(SPLIT_IMAGE, index(SPLIT_IMAGE))
    said = describe((*left_out, LeftOut("kmod", HOST_TOOL, of_build=False)))
    assert said == (
        f"linux-binary-7.2.6+deb13-amd64 (= {SPLIT_V}): no index lists it; "
        f"linux-modules-7.2.6+deb13-amd64 (= {SPLIT_V}): no index lists it; "
        f"linux-base (>= 4.17~), kmod: {HOST_TOOL}"
    )


# -- kernel files: told by what they are -----------------------------------------------------

CONFIG = (
    "#\n# Automatically generated file; DO NOT EDIT.\n"
    "# Linux/{arch} 7.2.6 Kernel Configuration\n#\n"
)


def bzimage(release: str) -> bytes:
    """An x86 boot-protocol header whose kernel_version string names ``release``."""
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x100).to_bytes(2, "little")  # the string at 0x200 + 0x100
    text = f"{release} (debian-kernel@lists.debian.org) #1 SMP".encode() + b"\0"
    data[0x300 : 0x300 + len(text)] = text
    return bytes(data)


def elf(release: str, machine: int = 21, e_type: int = 2) -> bytes:
    """A little-endian ELF (ppc64 by default) with the kernel's version banner."""
    head = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + struct.pack("<HH", e_type, machine)
    return head + bytes(0x200) + f"Linux version {release} (gcc) #1 SMP\0".encode()


def tree(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


REL = "7.2.6+deb13-powerpc64le"


def test_an_elf_kernel_named_vmlinuz_is_the_ppc64le_kernel(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            f"usr/lib/modules/{REL}/vmlinuz": elf(REL),
            f"usr/lib/modules/{REL}/config": CONFIG.format(arch="powerpc") + "CONFIG_MODULES=y\n",
            f"usr/lib/modules/{REL}/kernel/mm/x.ko.xz": b"module",
        },
    )
    owners = {
        f"usr/lib/modules/{REL}/vmlinuz": "linux-binary-X",
        f"usr/lib/modules/{REL}/config": "linux-base-X",
        f"usr/lib/modules/{REL}/kernel/mm/x.ko.xz": "linux-modules-X",
    }
    files = debian_kernel_files(root, PPC64LE, owners)

    assert (files.image, files.release) == (root / f"usr/lib/modules/{REL}/vmlinuz", REL)
    assert files.modules == root / f"usr/lib/modules/{REL}"
    assert files.missing(PPC64LE) == []
    assert dict(files.found_in) == {
        "kernel": f"usr/lib/modules/{REL}/vmlinuz (linux-binary-X)",
        "config": f"usr/lib/modules/{REL}/config (linux-base-X)",
        "modules": f"usr/lib/modules/{REL} (linux-modules-X)",
    }


def test_a_bzimage_is_found_whatever_its_name_and_its_release_is_its_own(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "boot/System.map-6.18.5+deb13-amd64": "ffffffffffffffff B The real System.map\n",
            "boot/linux-signed": bzimage("6.18.5+deb13-amd64"),
            "boot/settings-6.18.5+deb13-amd64": CONFIG.format(arch="x86")
            + "# CONFIG_MODULES is not set\n",
        },
    )
    files = debian_kernel_files(root, X86_64, {})

    assert (files.image, files.release) == (root / "boot/linux-signed", "6.18.5+deb13-amd64")
    assert files.config == root / "boot/settings-6.18.5+deb13-amd64"
    assert files.missing(X86_64) == []  # no modules, and none are needed


def test_neither_a_module_nor_another_arch_is_a_kernel(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            f"usr/lib/modules/{REL}/vmlinux": elf(REL, e_type=1),  # ET_REL: a module
            f"usr/lib/modules/{REL}/bzImage": bzimage(REL),
        },
    )
    files = debian_kernel_files(root, PPC64LE, {})

    assert files.image is None
    assert files.missing(PPC64LE) == ["ppc64le kernel", "kernel config", "kernel modules"]


def test_a_modular_kernel_without_its_modules_misses_them(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            f"usr/lib/modules/{REL}/vmlinuz": elf(REL),
            f"usr/lib/modules/{REL}/config": CONFIG.format(arch="powerpc") + "CONFIG_MODULES=y\n",
            "usr/lib/modules/6.1.0-9-powerpc64le/kernel/x.ko": b"another kernel's module",
        },
    )
    assert debian_kernel_files(root, PPC64LE, {}).missing(PPC64LE) == [f"modules for {REL}"]


def test_kernel_release_reads_the_kernel_itself(tmp_path: Path) -> None:
    assert kernel_release(tree(tmp_path, {"a": bzimage("6.1.0-9-amd64")}) / "a") == "6.1.0-9-amd64"
    assert kernel_release(tree(tmp_path, {"b": elf(REL)}) / "b") == REL
    assert kernel_release(tree(tmp_path, {"c": b"\x7fELF"}) / "c") is None
