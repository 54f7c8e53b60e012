"""CXL volatile memory: a type-3 device with a volatile memdev (QEMU commit adacc814f541
("hw/cxl: Multi-Region CXL Type-3 Devices (Volatile and Persistent)") (in QEMU v8.1.0))
behind a CXL host bridge and a fixed memory window. A RAM region made on it through the
kernel's sysfs ABI becomes System RAM on the window's own NUMA node (dax_cxl hands the dax
device to kmem); it onlines to ZONE_MOVABLE, the node gains memory, kswapd and a memory tier,
and offlined, given back from kmem and the region destroyed, all of it goes away again.
Every step's effects and the node invariants are checked (harness.hotplug.effects).
"""

from __future__ import annotations

import pytest

from harness.hotplug import cxl, expectations
from harness.hotplug.coldplug import CxlMemSpec
from harness.hotplug.vm import HotplugVM

MiB = 1 << 20
COLD = CxlMemSpec("cxl0", size=256 * MiB)

pytestmark = [
    pytest.mark.needs("cxl"),
    pytest.mark.needs_kernel("cxl"),
    pytest.mark.needs_qemu("cxl-type3.volatile-memdev", "pxb-cxl"),
]


@pytest.mark.memhp(cmdline=("memhp_default_state=offline",), coldplug=(COLD,), fresh=True)
def test_cxl_ram_region_is_system_ram_on_its_own_node_and_goes_away(vm: HotplugVM) -> None:
    boot = vm.state()

    region, ram = vm.create_cxl_ram_region("mem0", COLD.size)

    assert cxl.dax_devices(vm.guest) == {"dax0.0": "kmem"}, "dax_cxl did not hand it to kmem"
    window = cxl.window_of(vm.guest, ram)
    assert window and window.startswith("CXL Window"), f"System RAM (kmem) {ram} in {window}"
    blocks = vm.blocks(ram)
    (node,) = {b.node for b in blocks}
    assert node is not None and node not in boot.nodes["online"], (
        f"the window's memory went to node {node}, online since boot: "
        f"{sorted(boot.nodes['online'])}"
    )
    vm.expect_blocks(blocks, "offline", why="memhp_default_state=offline")

    onlined = vm.online(ram, "online_movable")

    vm.expect_blocks(onlined, "online", "Movable")
    flags = expectations.page_flags(vm.facts, "online")
    vm.expect_flags(onlined, *flags.value, why=flags.why)
    state = vm.state()
    assert node in state.nodes["has_memory"] and ("kswapd", node) in state.kthreads
    if state.tiered is not None:
        assert node in state.tiered, "the CXL node joined no memory tier"

    vm.offline(ram)
    assert vm.release_from_kmem("dax0.0", ram) == 0, "kmem kept memory that was offline"
    cxl.destroy_region(vm.guest, region)

    gone = vm.state()
    assert cxl.kmem_range(vm.guest) is None and vm.blocks(ram) == []
    assert cxl.dax_devices(vm.guest) == {}, "the dax device outlived its region"
    assert gone.nodes["online"] == boot.nodes["online"], (
        f"nodes online {sorted(gone.nodes['online'])}, at boot {sorted(boot.nodes['online'])}"
    )
