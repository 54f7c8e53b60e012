"""Guest images: resolve a kernel spec, fetch its packages, build (or reuse) the image.

build.py      build() and cached(): cache key, per-image lock, the build itself
image.py      the Image record (image.json) and its integrity check
specs.py      kernel specs: debian:X.Y[/flavour], PATH[,MODULES], build:DIR -> sources
apt.py        Debian packages through memhp's private apt configuration
lockfile.py   memhp.lock: specs pinned to exact packages and SHA256s
kernel.py     the kernel half: a build's kernel, config, modules by what they are; QEMU's file
vmlinux.py    bzImage -> ELF vmlinux with a PVH entry
modules.py    scenario modules and their dependency closure
rootfs.py     userspace: unpacked packages, usrmerge, busybox, the guest-images recipe
keys.py       SSH client and host keys
cpio.py       the newc writer
tools.py      host programs the build runs
"""

from harness.images.build import build, cached
from harness.images.image import Image

__all__ = ["Image", "build", "cached"]
