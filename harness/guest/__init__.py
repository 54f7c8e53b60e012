"""The guest as SSH shows it: GuestShell (shell.py), many files in one read (files.py), its
memory blocks (memory.py), what a boot is (boot.py), its /proc/kpageflags (kpageflags.py),
and the markers its init prints (markers.py)."""
