"""Memory hotplug in the scenarios' words: HotplugVM (vm.py) over the QMP device flows
(devices.py), the guest's NVDIMM tools (ndctl.py), what the kernel must show
(expectations.py) and the expected-vs-seen reports (checks.py, dmesg.py)."""
