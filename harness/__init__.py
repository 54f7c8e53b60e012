"""memhp: Linux memory hotplug tests on real QEMU guests.

The package, top down (imports run this way only: scenarios -> hotplug -> guest/qemu):

    plugin/       the pytest plugin: options, validation, the ``vm`` fixture, verdicts
    hotplug/      the test-facing vocabulary
        vm.py            HotplugVM: one booted guest as a scenario sees it (plug, online,
                         check flags); what the ``vm`` fixture yields
        devices.py       QMP flows for pc-dimm, virtio-mem, NVDIMM, each step an event
        records.py       what the flows return (Dimm, VirtioMem, Nvdimm, Unplug, ...)
        coldplug.py      memory devices on QEMU's command line
        ndctl.py         NVDIMM namespaces and dax kmem inside the guest
        expectations.py  what the kernel under test must show, each rule with its reason
        checks.py        expected-vs-seen reports per block
        dmesg.py         kernel splats in the guest's log
    guest/        the guest as SSH shows it
        shell.py         GuestShell: commands with a heartbeat, raw reads, block states
        files.py         many procfs/sysfs files read by one guest process
        memory.py        memory blocks and /proc/meminfo, parsed
        boot.py          what one boot is: release, command line, page and block sizes
        kpageflags.py    /proc/kpageflags bits, decoding, histograms
        markers.py       what the guest init prints for the harness
    qemu/         QEMU itself
        machine.py       QemuMachine: the process, soft-then-hard shutdown, lost-VM verdicts
        qmp.py           qemu.qmp on its own thread, and the event log waits start from
        console.py       the serial console: readiness, panics, lockups
        accel.py         KVM only where it really works, else TCG
    images/       guest images: kernel specs, Debian packages, lock files, the build
    report/       results (PASS/FAIL/ERROR/MISS/SKIP), KCIDB, HTML, page-flag pictures
    workflows/    series verify, bisect, the scenario runner and memhp's git worktrees
    preflight.py  a run's inputs checked once, before any boot; targets
    scenarios.py  the one pytest command line for the scenarios
    kbuild.py     kernels from source (kconfigs/ fragments); kconfig.py parses .config
    arch.py       x86-64 q35 and ppc64le pseries profiles: every arch difference
    errors.py     the three fault families (usage, infrastructure, kernel), exit statuses
    progress.py   progress lines and the ``memhp`` log; signals.py: SIGTERM as Ctrl-C
    cache.py, resources.py   where memhp keeps downloads, and finds its own files
    cli.py        the ``memhp`` command
"""
