from __future__ import annotations

from pathlib import Path

from harness.kbuild import KCONFIGS, dropped, first_error, kconfig_depends, parse_fragment
from harness.kconfig import parse


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_fragment_keeps_the_reason_above_each_option(tmp_path: Path) -> None:
    frag = write(
        tmp_path,
        "f.config",
        "# Why A.\nCONFIG_A=y\n\nCONFIG_B=m\n"
        '# no modversions\n# CONFIG_C is not set\nCONFIG_D="x"\n',
    )
    got = {r.option: (r.value, r.reason) for r in parse_fragment(frag)}
    assert got == {
        "A": ("y", "Why A."),
        "B": ("m", ""),
        "C": ("n", "no modversions"),
        "D": ('"x"', "no modversions"),
    }


def test_every_shipped_fragment_line_has_a_reason() -> None:
    for frag in sorted(KCONFIGS.glob("*.config")):
        for req in parse_fragment(frag):
            assert req.reason, f"{frag.name}: CONFIG_{req.option} has no reason above it"


def test_dropped_names_missing_and_changed_options(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm/Kconfig").write_text(
        'config ZONE_DEVICE\n\tbool "x"\n'
        "\tdepends on MEMORY_HOTREMOVE\n"
        "\tdepends on SPARSEMEM_VMEMMAP\n\nconfig OTHER\n"
        "\tdepends on NOPE\n"
    )
    frag = write(
        tmp_path,
        "f.config",
        "# a\nCONFIG_ZONE_DEVICE=y\n# b\nCONFIG_X=m\n# c\nCONFIG_Y=y\n# d\n# CONFIG_Z is not set\n",
    )
    config = parse("CONFIG_X=y\nCONFIG_Y=m\n")
    lost = dropped(parse_fragment(frag), config, tree)
    assert [d.requested.option for d in lost] == ["ZONE_DEVICE", "Y"]
    assert "depends on MEMORY_HOTREMOVE && SPARSEMEM_VMEMMAP" in str(lost[0])
    assert "absent" in str(lost[0]) and "=m" in str(lost[1])


def test_kconfig_depends_is_empty_for_unknown_option(tmp_path: Path) -> None:
    (tmp_path / "Kconfig").write_text("config A\n\tbool\n")
    assert kconfig_depends(tmp_path, "B") == ""


def test_first_error_finds_the_compiler_error(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "build.log",
        "$ make\n  CC mm/a.o\nmm/b.c:3:1: error: expected ';'\nmake[2]: *** [b.o] Error 1\n",
    )
    assert first_error(log) == "mm/b.c:3:1: error: expected ';'"
