"""The kernel's own memory-hotplug selftest, from the tree of the kernel under test:
tools/testing/selftests/memory-hotplug/mem-on-off-test.sh (what LKFT and LKP run as
kselftest-memory-hotplug), run inside the guest with bash-static.

The script comes from the tree a build:DIR was built from (its ``source`` link), or for a
Debian kernel from Debian's linux-source-X.Y of the same line (downloaded once, the one
file kept in memhp's cache).
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

from harness import cache
from harness.arch import Arch
from harness.errors import ArchiveError
from harness.images.apt import SUITES, AptCache, VersionKey
from harness.images.image import Image

SCRIPT = "tools/testing/selftests/memory-hotplug/mem-on-off-test.sh"
KSFT_PASS, KSFT_SKIP = 0, 4
# What the script prints when it reaches its second half; without the module it exits 0
# before it ("memory-notifier-error-inject module is not available").
INJECTION = "Test with memory notifier error injection"


def script_for(image: Image, arch: Arch) -> tuple[Path | None, str]:
    """The selftest of the image's kernel and where it came from; None and why not."""
    if image.spec.startswith("build:"):
        tree = Path(image.spec.removeprefix("build:")) / "source"
        path = tree / SCRIPT
        return (path, f"{tree.resolve()}") if path.is_file() else (None, f"no {path}")
    m = re.fullmatch(r"debian:(\d+\.\d+)(?:/.*)?", image.spec)
    if not m:
        return None, f"{image.spec}: a local kernel has no tree memhp knows"
    return _from_debian_source(m.group(1), arch)


def _from_debian_source(line: str, arch: Arch) -> tuple[Path | None, str]:
    apt = AptCache(cache.path("apt", arch.debian_arch), arch.debian_arch)
    name = f"linux-source-{line}"
    found = [p for p in apt.find(lambda n: n == name, SUITES)]
    if not found:
        return None, f"no {name} package in the indexes"
    pkg = max(found, key=lambda p: VersionKey(p.version))
    dest = cache.path("selftests", f"{name}_{pkg.version}", Path(SCRIPT).name)
    if dest.is_file():
        return dest, str(pkg)
    try:
        deb = apt.fetch_any(pkg)
    except ArchiveError as exc:
        return None, str(exc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _extract_one(deb, f"{name}/{SCRIPT}", dest)
    return dest, str(pkg)


def _extract_one(deb: Path, member: str, dest: Path) -> None:
    """One file out of linux-source's usr/src/linux-source-X.Y.tar.xz inside the .deb."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as outer:
            for entry in outer:
                if entry.name.endswith(".tar.xz") and "/usr/src/linux-source-" in f"/{entry.name}":
                    inner = outer.extractfile(entry)
                    if inner is None:
                        break
                    with tarfile.open(fileobj=inner, mode="r|xz") as source:
                        for item in source:
                            if item.name == member:
                                data = source.extractfile(item)
                                if data is not None:
                                    dest.write_bytes(data.read())
                                    return
                    break
    raise ArchiveError(f"{deb.name} holds no {member}")
