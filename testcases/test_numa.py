"""NUMA guests: two nodes with memory and a third without. A DIMM plugged into a node shows
its blocks under that node and its pages in that node's zones; the memoryless node comes
online with the DIMM, gains memory when it is onlined and goes offline again when the DIMM
is removed; removal gives back per node.

Node states follow mm/memory_hotplug.c: a node is onlined at add time (__try_online_node),
joins N_MEMORY at online (node_states_set_node), and N_NORMAL_MEMORY only for kernel zones.
"""

from __future__ import annotations

import pytest

from harness.hotplug import expectations
from harness.hotplug.records import Unplug
from harness.hotplug.vm import HotplugVM

pytestmark = [
    pytest.mark.needs("numa"),
    pytest.mark.needs_qemu("pc-dimm"),
    pytest.mark.needs_kernel("memory-hotremove", "dimm"),
]

MiB = 1 << 20
TWO_NODES_AND_A_MEMORYLESS_ONE = (512 * MiB, 512 * MiB, 0)
NUMA = pytest.mark.memhp(numa=TWO_NODES_AND_A_MEMORYLESS_ONE)


def movable_present(vm: HotplugVM, node: int) -> int:
    return vm.state().zone(node, "Movable")[0]


@NUMA
@pytest.mark.parametrize("node", [0, 1])
def test_numa_dimm_lands_in_its_node(vm: HotplugVM, node: int) -> None:
    """Blocks link to the DIMM's node; onlined movable, they are that node's Movable zone."""
    before = {n: movable_present(vm, n) for n in (0, 1)}
    dimm = vm.plug_dimm(2 * vm.arch.dimm_align, node=node)

    blocks = vm.online(dimm, "online_movable")

    assert dimm.node == node
    assert {b.node for b in blocks} == {node}, [(b.index, b.node) for b in blocks]
    pages = dimm.size // vm.guest.page_size()
    after = {n: movable_present(vm, n) for n in (0, 1)}
    assert after[node] - before[node] == pages, (before, after)
    assert after[1 - node] == before[1 - node], "the other node's Movable zone moved"


@pytest.mark.memhp(numa=TWO_NODES_AND_A_MEMORYLESS_ONE, fresh=True)
def test_numa_memoryless_node_gains_memory_and_gives_it_back(vm: HotplugVM) -> None:
    """Node 2 has no memory and no CPU: online (with its sysfs directory) once its first
    DIMM is added (arm64: from boot), N_MEMORY with kswapd2, kcompactd2 and a memory tier
    once onlined, never N_NORMAL_MEMORY for Movable memory; offlined and removed, all of it
    goes away again (try_offline_node). Every step checks the node invariants
    (harness.hotplug.effects)."""
    assert 2 in vm.guest.nodes("possible")
    assert 2 not in vm.guest.nodes("has_memory")
    online_at_boot = vm.arch.memoryless_nodes_online_at_boot
    assert (2 in vm.guest.nodes("online")) == online_at_boot, (
        f"node 2 online at boot: {2 in vm.guest.nodes('online')}, expected {online_at_boot} "
        "(harness.arch: memoryless_nodes_online_at_boot)"
    )

    dimm = vm.plug_dimm(2 * vm.arch.dimm_align, node=2)
    added = vm.guest.nodes("online"), vm.guest.nodes("has_memory")
    vm.online(dimm, "online_movable")
    onlined = vm.state()
    vm.offline(dimm)
    result = vm.unplug_dimm(dimm)

    assert 2 in added[0], "node 2 is onlined when its first memory is added"
    onlined_at_add = expectations.hot_added_block_state(vm.facts)
    assert (2 in added[1]) == (onlined_at_add.value.state == "online"), (
        f"node 2 in has_memory right after the add: {2 in added[1]}; the blocks were "
        f"{onlined_at_add.value.state} then ({onlined_at_add.why})"
    )
    assert 2 in onlined.nodes["has_memory"] and 2 not in onlined.nodes["has_normal_memory"]
    assert {("kswapd", 2), ("kcompactd", 2)} <= onlined.kthreads, sorted(onlined.kthreads)
    assert onlined.zone(2, "Movable")[0] == dimm.size // vm.guest.page_size()
    assert result.outcome is Unplug.DELETED, result.describe()
    gone = vm.state()
    assert 2 not in gone.nodes["online"] and 2 not in gone.node_mem_total, (
        "node 2 stays online with no memory, block or CPU left (try_offline_node)"
    )
    assert not {("kswapd", 2), ("kcompactd", 2)} & gone.kthreads, sorted(gone.kthreads)


@NUMA
def test_numa_removal_gives_back_per_node(vm: HotplugVM) -> None:
    """Removing node 1's DIMM empties node 1's Movable zone and leaves node 0's alone."""
    kept = vm.plug_dimm(vm.arch.dimm_align, node=0)
    vm.online(kept, "online_movable")
    before = {n: movable_present(vm, n) for n in (0, 1)}
    gone = vm.plug_dimm(vm.arch.dimm_align, node=1)
    vm.online(gone, "online_movable")
    vm.offline(gone)

    result = vm.unplug_dimm(gone)

    assert result.outcome is Unplug.DELETED, result.describe()
    assert {n: movable_present(vm, n) for n in (0, 1)} == before
    assert vm.blocks(gone) == []
