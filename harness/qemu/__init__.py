"""QEMU itself: the process (machine.py), its QMP protocol and events (qmp.py), its serial
console (console.py) and the accelerator choice (accel.py). Nothing here knows hotplug."""
