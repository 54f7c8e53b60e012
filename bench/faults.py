"""The fault suite as a table: fault -> verdict class, seconds to the verdict, leftovers.

Runs tests/test_faults.py (real QEMU guests, one fault each) and prints one row per fault
from its JUnit record; every row's test also asserted that no QEMU process and no machine
dir was left behind, so a passing row has none.

    .venv/bin/python bench/faults.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# test id fragment -> (fault, expected verdict class)
FAULTS = {
    "test_qemu_killed": ("kill -9 QEMU mid-scenario", "ERROR (infrastructure)"),
    "[test_qemu_stopped-": ("SIGSTOP QEMU during a DIMM plug", "ERROR (infrastructure)"),
    "test_qemu_stopped_during_command": (
        "SIGSTOP QEMU during a guest command",
        "ERROR (infrastructure)",
    ),
    "test_guest_panics": ("guest kernel panic", "FAIL (kernel)"),
    "SIGTERM-xdist": ("SIGTERM to the runner (-n 2)", "interrupted, exit 2, report written"),
    "[SIGINT]": ("SIGINT to the runner's process group", "interrupted, exit 2, report written"),
    "port_taken": ("SSH port taken before QEMU binds it", "retried, boots"),
    "cannot_start": ("QEMU cannot start (broken kernel file)", "LaunchError with QEMU's message"),
    "cut_short": ("image cut short after its check", "ImageError (MISS), not FAIL"),
    "unknown-line": ("--kernel debian:9.9", "usage, exit 2, one line"),
    "unknown-spec": ("--kernel foo:bar", "usage, exit 2, one line"),
    "bad-build-dir": ("--kernel build:/nonexistent", "usage, exit 2, one line"),
    "bad-expect-value": ("--expect memmap_init=sometimes", "usage, exit 2, one line"),
    "bad-expect-name": ("--expect nosuch=1", "usage, exit 2, one line"),
    "kvm-unusable": ("--accel kvm without usable KVM", "usage, exit 2, one line"),
    "unwritable-cache": ("unwritable MEMHP_CACHE", "usage, exit 2, one line"),
    "no-qemu": ("no QEMU binary", "usage, exit 2, one line"),
}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "faults.xml"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/test_faults.py",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
            ],
            cwd=ROOT,
        )
        rows = []
        root = ET.parse(junit).getroot()
        for case in root.iter("testcase"):
            name = case.get("name", "")
            fault, verdict = next((v for k, v in FAULTS.items() if k in name), (name, "?"))
            props = _measurements(root, name)
            seconds = props.get("seconds_to_verdict") or props.get("seconds_to_exit")
            ok = case.find("failure") is None and case.find("error") is None
            rows.append(
                (
                    fault,
                    verdict if ok else f"NOT AS EXPECTED ({verdict})",
                    seconds or f"{float(case.get('time', 0)):.1f} (whole test)",
                    "none" if ok else "see the test",
                )
            )
    print("| fault | verdict | seconds to verdict | leftovers |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())


def _measurements(root: ET.Element, name: str) -> dict[str, str]:
    """A test's numbers: the suite properties memhp_measurement = "NODEID NAME=VALUE"."""
    found = {}
    for p in root.iter("property"):
        nodeid, _, rest = (p.get("value") or "").partition(" ")
        if p.get("name") == "memhp_measurement" and nodeid.endswith(f"::{name}"):
            key, _, value = rest.partition("=")
            found[key] = value
    return found
