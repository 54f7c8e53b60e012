"""The guest as SSH shows it: GuestShell (shell.py), its memory blocks (memory.py), its
/proc/kpageflags (kpageflags.py), and the markers its init prints (markers.py)."""
