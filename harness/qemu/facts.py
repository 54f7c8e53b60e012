"""What a QEMU can do, asked of the QEMU itself: its version (query-version), the device
types it has (qom-list-types), the properties of the memory devices (device-list-properties)
and its machines (query-machines). Read once per build by a probe process (``-machine none``,
QMP on stdio, no guest), kept in memhp's cache beside the build's identity. A scenario that
needs a device or property a QEMU lacks skips and names it (``needs_qemu``); nothing is
guessed from a version string where the QEMU can be asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness import cache
from harness.errors import LaunchError
from harness.qemu.builds import QemuBuild

# The device types whose properties scenarios ask about.
PROBED = ("pc-dimm", "nvdimm", "virtio-mem-pci", "virtio-mem-ccw", "cxl-type3", "pxb-cxl")


@dataclass(frozen=True)
class QemuFacts:
    version: tuple[int, int, int]
    package: str  # what the build says of itself ("Debian 1:10.0.13+ds-0+deb13u1")
    types: frozenset[str]
    properties: Mapping[str, frozenset[str]] = field(default_factory=dict)
    machines: frozenset[str] = frozenset()

    def has(self, feature: str) -> bool:
        """A device type ("cxl-type3") or one's property ("virtio-mem-pci.dynamic-memslots")."""
        kind, _, prop = feature.partition(".")
        if kind not in self.types:
            return False
        return not prop or prop in self.properties.get(kind, frozenset())

    def lacking(self, features: Iterable[str]) -> list[str]:
        return [f for f in features if not self.has(f)]

    def to_json(self) -> dict[str, object]:
        return {
            "version": list(self.version),
            "package": self.package,
            "types": sorted(self.types),
            "properties": {k: sorted(v) for k, v in self.properties.items()},
            "machines": sorted(self.machines),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QemuFacts:
        major, minor, micro = d["version"]
        return cls(
            (major, minor, micro),
            str(d["package"]),
            frozenset(d["types"]),
            {k: frozenset(v) for k, v in d["properties"].items()},
            frozenset(d["machines"]),
        )


_known: dict[str, QemuFacts] = {}


def facts(build: QemuBuild) -> QemuFacts:
    """The facts of ``build``: from this process, memhp's cache, or a probe.

    :raises LaunchError: the probe did not answer.
    """
    key = _key(build)
    if key in _known:
        return _known[key]
    path = cache.path("qemu", f"facts-{key}.json")
    if path.is_file():
        found = QemuFacts.from_json(json.loads(path.read_text()))
    else:
        found = probe(build)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(found.to_json()))
        tmp.replace(path)
    _known[key] = found
    return found


def _key(build: QemuBuild) -> str:
    """A build's facts change with its binary (a developer's rebuild) and its modules."""
    st = build.binary.stat()
    text = (
        f"{build.binary}:{st.st_size}:{st.st_mtime_ns}:{build.identity}:{sorted(build.env.items())}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def probe(build: QemuBuild) -> QemuFacts:
    """Ask a QEMU process with no machine, over QMP on stdio.

    :raises LaunchError: it did not start or answer.
    """
    commands = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-version"},
        {"execute": "qom-list-types"},
        {"execute": "query-machines"},
        *({"execute": "device-list-properties", "arguments": {"typename": t}} for t in PROBED),
        {"execute": "quit"},
    ]
    argv = [*build.argv, "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"]
    try:
        proc = subprocess.run(
            argv,
            input="".join(json.dumps(c) + "\n" for c in commands),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **build.env},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise LaunchError(f"{build.label}: the capability probe did not run: {exc}") from exc
    replies = [m for m in map(_json, proc.stdout.splitlines()) if "return" in m or "error" in m]
    if len(replies) < len(commands) - 1:
        raise LaunchError(
            f"{build.label}: the capability probe got {len(replies)} answers: "
            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}",
            cmdline=" ".join(argv),
        )
    version, types, machines = replies[1]["return"], replies[2]["return"], replies[3]["return"]
    props = {
        t: frozenset(p["name"] for p in r["return"])
        for t, r in zip(PROBED, replies[4 : 4 + len(PROBED)], strict=True)
        if "return" in r
    }
    q = version["qemu"]
    return QemuFacts(
        (q["major"], q["minor"], q["micro"]),
        version.get("package", "").strip(),
        frozenset(t["name"] for t in types),
        props,
        frozenset(m["name"] for m in machines),
    )


def _json(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
