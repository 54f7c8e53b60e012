"""Host programs an image build runs, found once with the package that provides each."""

from __future__ import annotations

import shutil

from harness.errors import UsageError


def host_tool(name: str) -> str:
    """A host program the image build runs; sbin counts even when not on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        package = HOST_TOOLS.get(name, name)
        raise UsageError(f"{name} not found: install {package} (./setup.sh does)")
    return found


# Host programs an image build needs, and the Debian package of each.
HOST_TOOLS = {"depmod": "kmod", "dpkg-deb": "dpkg", "apt-get": "apt", "zstd": "zstd"}
