"""Unit tests for harness.kconfig and the rules of harness.hotplug.expectations: the online
policy from the config, each version rule on both sides of its boundary, and the facts the
kernel reports about itself (missing ones are infrastructure errors, never a default)."""

from __future__ import annotations

import dataclasses

import pytest

from harness import kconfig
from harness.arch import X86_64
from harness.errors import InfrastructureError, UsageError
from harness.guest.kpageflags import KPF
from harness.hotplug.expectations import (
    KPAGEFLAGS_ZERO,
    MEMMAP_FORCE,
    MEMMAP_PAGE_OFFLINE,
    MEMMAP_PER_BLOCK,
    OVERRIDES,
    QEMU_VIRTIO_MEM_UNPLUG,
    BlockState,
    KernelFacts,
    auto_movable_zones,
    default_online_policy,
    dimm_unplug,
    dimm_unplug_holding_memmap,
    hot_added_block_state,
    kernel_supports,
    memmap_init,
    memmap_on_memory_mode,
    no_memmap_flags,
    parse_overrides,
    parse_release,
    self_hosted_memmap,
    virtio_mem_unplug,
)
from harness.hotplug.records import Unplug

CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_MEMORY_HOTPLUG=y
CONFIG_VIRTIO_MEM=m
CONFIG_LOCALVERSION="-memhp"
CONFIG_NR_CPUS=64
# CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE is not set
# CONFIG_FOO is not set because
"""

NEW_STYLE = """\
# CONFIG_MHP_DEFAULT_ONLINE_TYPE_OFFLINE is not set
CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO=y
# CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_KERNEL is not set
# CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_MOVABLE is not set
"""


def test_parse_reads_values_and_unset_options() -> None:
    cfg = kconfig.parse(CONFIG, "test")
    assert cfg.source == "test"
    assert cfg.get("MEMORY_HOTPLUG") == "y"
    assert cfg.get("CONFIG_VIRTIO_MEM") == "m"
    assert cfg.get("LOCALVERSION") == '"-memhp"'
    assert cfg.get("NR_CPUS") == "64"
    assert cfg.get("MEMORY_HOTPLUG_DEFAULT_ONLINE") == "n"
    assert cfg.get("FOO") is None  # not the exact "is not set" form
    assert cfg.get("ABSENT") is None


def test_enabled_means_y_or_m() -> None:
    cfg = kconfig.parse(CONFIG)
    assert cfg.enabled("MEMORY_HOTPLUG")
    assert cfg.enabled("CONFIG_VIRTIO_MEM")
    assert not cfg.enabled("MEMORY_HOTPLUG_DEFAULT_ONLINE")
    assert not cfg.enabled("ABSENT")


def test_line_cites_option_as_in_file() -> None:
    cfg = kconfig.parse(CONFIG)
    assert cfg.line("MEMORY_HOTPLUG") == "CONFIG_MEMORY_HOTPLUG=y"
    assert cfg.line("CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE") == (
        "CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE is not set"
    )
    assert cfg.line("ABSENT") == "CONFIG_ABSENT absent"


def test_load_without_file_is_empty(tmp_path) -> None:
    assert kconfig.load(None).options == {}
    assert kconfig.load(tmp_path / "missing").options == {}
    (tmp_path / "config").write_text("CONFIG_A=y\n")
    assert kconfig.load(tmp_path / "config").get("A") == "y"


def facts(
    config: str = "",
    cmdline: tuple[str, ...] = (),
    firmware: bool = False,
    overrides: dict[str, str] | None = None,
) -> KernelFacts:
    return KernelFacts(
        arch="x86_64",
        release="6.12.117+deb13-amd64",
        config=kconfig.parse(config),
        cmdline=cmdline,
        qemu_version=(7, 2, 0),
        firmware_onlines_dimms=firmware,
        overrides=overrides or {},
    )


def test_cmdline_memhp_default_state_wins() -> None:
    got = default_online_policy(facts(NEW_STYLE, ("quiet", "memhp_default_state=offline")))
    assert got.value == "offline"
    assert "memhp_default_state=offline" in got.why


def test_cmdline_last_memhp_default_state_wins() -> None:
    cmdline = ("memhp_default_state=offline", "memhp_default_state=online_movable")
    assert default_online_policy(facts(NEW_STYLE, cmdline)).value == "online_movable"


def test_cmdline_bogus_state_falls_back_to_config() -> None:
    assert default_online_policy(facts(NEW_STYLE, ("memhp_default_state=x",))).value == "online"


def test_online_type_choice_online_auto() -> None:
    got = default_online_policy(facts(NEW_STYLE))
    assert got.value == "online"
    assert "CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO=y" in got.why


def test_online_type_choice_movable() -> None:
    cfg = "CONFIG_MHP_DEFAULT_ONLINE_TYPE_ONLINE_MOVABLE=y\n"
    assert default_online_policy(facts(cfg)).value == "online_movable"


def test_old_bool_option_online() -> None:
    got = default_online_policy(facts("CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE=y\n"))
    assert got.value == "online"
    assert "CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE=y" in got.why


def test_old_bool_option_not_set_is_offline() -> None:
    got = default_online_policy(facts("# CONFIG_MEMORY_HOTPLUG_DEFAULT_ONLINE is not set\n"))
    assert got.value == "offline"
    assert "is not set" in got.why


def test_override_wins_over_everything() -> None:
    f = facts(
        NEW_STYLE, ("memhp_default_state=offline",), overrides={"online_policy": "online_movable"}
    )
    got = default_online_policy(f)
    assert got.value == "online_movable"
    assert "--expect" in got.why


def test_bad_override_raises_usage_error() -> None:
    with pytest.raises(UsageError, match="online_policy=sometimes"):
        default_online_policy(facts(NEW_STYLE, overrides={"online_policy": "sometimes"}))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("online_policy=sometimes", r"online_policy is one of offline, online, online_kernel"),
        ("memmap_init", r"give NAME=VALUE with NAME one of memmap_init, no_memmap_flags"),
        ("nosuch=1", r"NAME one of"),
    ],
)
def test_parse_overrides_rejects_names_and_values_up_front(option: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_overrides([option])


def test_parse_overrides_accepts_every_listed_value() -> None:
    for name, values in OVERRIDES.items():
        for value in values:
            assert parse_overrides([f"{name}={value}"]) == {name: value}


def test_empty_config_is_a_missing_fact_not_a_default() -> None:
    with pytest.raises(InfrastructureError, match=r"no kernel config for 6\.12\.117"):
        default_online_policy(facts(""))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("offline", BlockState("offline", None)),
        ("online", BlockState("online", "Normal")),
        ("online_kernel", BlockState("online", "Normal")),
        ("online_movable", BlockState("online", "Movable")),
    ],
)
def test_hot_added_block_state_follows_policy(state: str, expected: BlockState) -> None:
    got = hot_added_block_state(facts(NEW_STYLE, (f"memhp_default_state={state}",)))
    assert got.value == expected
    assert got.why
    assert state in got.why


@pytest.mark.parametrize("state", ["offline", "online"])
def test_pseries_dlpar_onlines_dimms_to_normal_when_policy_leaves_them(state: str) -> None:
    got = hot_added_block_state(facts("", (f"memhp_default_state={state}",), firmware=True))
    assert got.value == BlockState("online", "Normal")
    assert "DLPAR" in got.why


def test_pseries_online_movable_policy_onlines_at_add_time_before_dlpar() -> None:
    got = hot_added_block_state(facts("", ("memhp_default_state=online_movable",), firmware=True))
    assert got.value == BlockState("online", "Movable")


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.12.117+deb13-amd64", (6, 12, 117)),
        ("6.1.0-28-amd64", (6, 1, 0)),
        ("7.0-rc1", (7, 0, 0)),
        ("weird", (0, 0, 0)),
    ],
)
def test_parse_release(release: str, version: tuple[int, int, int]) -> None:
    assert parse_release(release) == version


def test_auto_movable_dimms_go_movable_until_the_ratio_then_normal() -> None:
    # x86, 1 GiB boot: 3 GiB of DIMMs fit in 301 % of 262010 kernel pages, the 4th does not.
    got = auto_movable_zones(262010, [262144] * 5)
    assert got.value == ("Movable",) * 3 + ("Normal",) * 2
    assert auto_movable_zones(261273, [262144] * 3).value == ("Movable", "Movable", "Normal")


def test_auto_movable_virtio_mem_blocks_repeat_three_movable_one_normal() -> None:
    zones = auto_movable_zones(262010, [32768] * 40, dynamic=True).value
    letters = "".join(z[0] for z in zones)
    assert letters == "M" * 24 + "N" + "MMMN" * 3 + "MMM"


def test_auto_movable_counts_cma_as_movable_not_kernel() -> None:
    # arm64's 64 MiB CMA area in 1 GiB of boot memory: 3 GiB of DIMMs no longer fit at 301
    assert auto_movable_zones(262144, [262144] * 3).value == ("Movable",) * 3
    got = auto_movable_zones(262144, [262144] * 3, cma=16384).value
    assert got == ("Movable", "Movable", "Normal")


def test_auto_movable_without_boot_memory_is_always_normal() -> None:
    assert set(auto_movable_zones(0, [32768] * 4).value) == {"Normal"}


# -- version rules, each on both sides of its boundary; facts the kernel reports ------------


def at(release: str, **over: object) -> KernelFacts:
    """Facts of a kernel of upstream version ``release`` (Debian's uname -v form)."""
    over = {"struct_page_size": 64, **over}
    return dataclasses.replace(facts(NEW_STYLE), build=f"#1 SMP Debian {release}-1", **over)


def test_citations_have_one_form_and_give_their_release() -> None:
    assert str(MEMMAP_PAGE_OFFLINE).startswith('commit 503b158fc30f ("mm/memory_hotplug: ')
    assert str(MEMMAP_PAGE_OFFLINE).endswith('") (in v6.11)')
    assert MEMMAP_PAGE_OFFLINE.version == (6, 11, 0)
    assert QEMU_VIRTIO_MEM_UNPLUG.version == (8, 1, 0)
    for commit in (MEMMAP_PAGE_OFFLINE, KPAGEFLAGS_ZERO, MEMMAP_PER_BLOCK, MEMMAP_FORCE):
        assert len(commit.hash) == 12 and int(commit.hash, 16) >= 0


@pytest.mark.parametrize(
    ("release", "value"), [("6.15.11", 1 << KPF.NOPAGE), ("6.16.0", 0), ("7.2.1", 0)]
)
def test_no_memmap_flags_change_at_v6_16(release: str, value: int) -> None:
    got = no_memmap_flags(at(release))
    assert got.value == value
    assert ("a40b3fa844b4" in got.why) == (value == 0)


@pytest.mark.parametrize(
    ("release", "value"), [("6.10.14", "reserved"), ("6.11.0", "offline"), ("6.12.118", "offline")]
)
def test_memmap_init_changes_at_v6_11(release: str, value: str) -> None:
    got = memmap_init(at(release))
    assert got.value == value and "503b158fc30f" in got.why


@pytest.mark.parametrize(
    ("param", "asked", "mode"),
    [
        (None, "1", None),  # no parameter: no CONFIG_MHP_MEMMAP_ON_MEMORY
        ("N", "force", None),  # a 6.1 bool reads force as N
        ("Y", "1", "on"),
        ("force", "force", "force"),
    ],
)
def test_memmap_on_memory_mode_is_what_the_kernel_took(
    param: str | None, asked: str, mode: str | None
) -> None:
    f = at(
        "6.12.118",
        memmap_on_memory_param=param,
        cmdline=(f"memory_hotplug.memmap_on_memory={asked}",),
    )
    got = memmap_on_memory_mode(f)
    assert got.value == mode
    if param is not None:
        assert f"reads {param}" in got.why and f"asked for {asked}" in got.why


@pytest.mark.parametrize(("release", "pages"), [("6.7.12", 0), ("6.8.0", 512)])
def test_two_block_devices_host_their_memmap_per_block_from_v6_8(release: str, pages: int) -> None:
    f = at(release, memmap_on_memory_param="Y")
    got = self_hosted_memmap(
        f, device_blocks=2, block_size=128 << 20, page_size=4096, pageblock=2 << 20
    )
    assert got.value.pages == pages and "6b8f0798b85a" in got.why


@pytest.mark.parametrize(
    ("struct_page", "param", "pages"),
    [
        (64, "Y", 512),  # 2 MiB of memmap: whole pageblocks
        (56, "Y", 0),  # 448 pages: not whole pageblocks, and only force pads
        (56, "force", 512),  # padded to the pageblock
    ],
)
def test_self_hosted_memmap_follows_the_kernels_struct_page(
    struct_page: int, param: str, pages: int
) -> None:
    f = at("6.12.118", memmap_on_memory_param=param, struct_page_size=struct_page)
    got = self_hosted_memmap(
        f, device_blocks=1, block_size=128 << 20, page_size=4096, pageblock=2 << 20
    )
    assert got.value.pages == pages, got


def test_a_kernel_that_does_not_say_its_struct_page_size_is_an_infrastructure_error() -> None:
    f = at("6.12.118", memmap_on_memory_param="Y", struct_page_size=None)
    with pytest.raises(InfrastructureError, match="CONFIG_PROC_KCORE"):
        self_hosted_memmap(
            f, device_blocks=1, block_size=128 << 20, page_size=4096, pageblock=2 << 20
        )


@pytest.mark.parametrize(
    ("qemu", "outcome"),
    [((7, 2, 22), Unplug.REJECTED), ((8, 0, 5), Unplug.REJECTED), ((8, 1, 0), Unplug.DELETED)],
)
def test_virtio_mem_device_del_from_qemu_8_1(qemu: tuple[int, int, int], outcome: Unplug) -> None:
    got = virtio_mem_unplug(at("6.12.118", qemu_version=qemu))
    assert got.value == frozenset({outcome}) and "339a8bbdfed9" in got.why


@pytest.mark.parametrize(("pseries", "outcome"), [(False, Unplug.REFUSED), (True, Unplug.NO_EVENT)])
def test_a_dimm_holding_a_later_memmap_is_refused_each_arch_its_way(
    pseries: bool, outcome: Unplug
) -> None:
    f = at("6.12.118", firmware_onlines_dimms=pseries)
    assert dimm_unplug_holding_memmap(f).value is outcome
    assert dimm_unplug(f).value is Unplug.DELETED


def test_no_config_is_no_answer_for_a_feature() -> None:
    with pytest.raises(InfrastructureError, match="a missing fact is not a yes"):
        kernel_supports("virtio-mem", kconfig.parse(""), X86_64)
