"""memhp: Linux memory hotplug tests on real QEMU guests.

The package, top down (imports run this way only: plugin -> hotplug -> guest/qemu; report,
images and the workflows beside them; verdict, errors, liveness and arch below everything):

    plugin/       the pytest plugin (entry point plugin/hooks.py gathers the rest)
        options.py       options, markers, the run's inputs checked before any boot, shards
        fixtures.py      the guest pool's fixture (trimmed between scenarios), ``vm`` and
                         ``measure``; skips for what is lacking
        verdicts.py      each test phase classified once (verdict.py); the dmesg watch;
                         the run's exit status and completeness (an interrupted run)
        summary.py       the terminal's end: errors not the kernel's, the scenario table
        status.py        where the run stands: a line on a terminal, plain lines elsewhere
        repeats.py       --memhp-repeat: failing scenarios again on fresh guests (flaky?)
        pool.py          booted guests shared between compatible scenarios
        recording.py     result records, the page-flag recorder, reproducers, JUnit
                         properties
        shards.py        --memhp-shard: balanced, deterministic parts of a selection
        stash.py         what the hooks keep on pytest's config and items
    hotplug/      the test-facing vocabulary
        vm.py            HotplugVM: one booted guest as a scenario sees it; every hotplug
                         step is one pipeline (state, act, observers, state, effects)
        devices.py       QMP flows for pc-dimm, virtio-mem, NVDIMM, each step an event; a
                         live guest that never acknowledges a device is the kernel's
        ports.py         the PCIe root ports hot-plugged PCI devices go into
        records.py       what the flows return (Dimm, VirtioMem, Nvdimm, Unplug, ...)
        coldplug.py      memory devices on QEMU's command line
        effects.py       everything else a step changes, and what must hold after every
                         step: pure arithmetic over two states, each check citing the
                         kernel function behind it
        expectations.py  what the kernel under test must show, from facts it reports; each
                         version rule cites its commit (Commit)
        checks.py        expected-vs-seen reports per block; rules over nothing fail
        dmesg.py         kernel splats in the guest's log
        ndctl.py         NVDIMM namespaces and dax kmem inside the guest
        selftest.py      the kernel tree's own mem-on-off-test.sh
    guest/        the guest as SSH shows it
        shell.py         GuestShell: plumbing (run) apart from commands that exercise the
                         kernel (exercise); a heartbeat on every command
        files.py         many procfs/sysfs files read by one guest process
        boot.py          what one boot is: release, command line, sizes, memmap_on_memory,
                         the kernel's VMCOREINFO (sizeof(struct page), section size)
        memory.py        memory blocks and /proc/meminfo, parsed
        procfs.py        /proc/zoneinfo and the node lists, parsed
        kpageflags.py    /proc/kpageflags bits, decoding, histograms
        kernel_log.py    what the kernel's log says when it went wrong (panic, splats)
        markers.py       what the guest init prints for the harness
    qemu/         QEMU itself
        machine.py       QemuMachine: the process, soft-then-hard shutdown, saved boots
        config.py        MachineConfig: what a guest is, and its QEMU command line
        judge.py         whose fault a lost VM is (a panic on the console: the kernel's)
        qmp.py           qemu.qmp on its own thread, and the event log waits start from
        console.py       the serial console: readiness, panics, lockups
        snapshots.py     where saved boots live, keyed by everything that shapes a guest
        accel.py         KVM only where it really works, else TCG
    images/       guest images: kernel specs, Debian packages, lock files, the build
    report/       result records, KCIDB, HTML, JUnit merge, compare, page-flag pictures
                  (and their font), reproducer scripts (repro.py)
    workflows/    series verify, bisect, self-check, the scenario runner, git worktrees
    verdict.py    the one verdict authority: classify() and exit_status()
    errors.py     the fault families (usage, infrastructure, kernel, and the neutral ones
                  a caller judges), exit statuses
    liveness.py   how every wait tells a slow VM from a gone one (HEARTBEAT)
    preflight.py  a run's inputs checked once, before any boot; targets
    scenarios.py  the one pytest command line for the scenarios; pytest's refusals first
    workers.py    how many scenarios at a time (cores, memory) and idle guests a worker keeps
    transcript.py what was done to a guest, in order (QMP, events waited for, guest commands)
    kbuild.py     kernels from source (kconfigs/ fragments); kconfig.py parses .config
    arch.py       x86-64 q35, ppc64le pseries, arm64 virt and s390x profiles: every arch
                  difference
    progress.py   progress lines and the ``memhp`` log; signals.py: SIGTERM as Ctrl-C
    cache.py, resources.py   where memhp keeps downloads, and finds its own files
    cli.py        the ``memhp`` command
"""
