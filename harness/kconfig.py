"""Kernel .config files: parse them, and look options up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")


@dataclass(frozen=True)
class KernelConfig:
    """Option name (without CONFIG_) -> value ('y', 'm', '"str"', '123', or 'n')."""

    options: Mapping[str, str] = field(default_factory=dict)
    source: str = "unknown"  # where it was read, for messages

    def get(self, name: str) -> str | None:
        """The value, 'n' for '# ... is not set', None when the symbol is absent."""
        return self.options.get(name.removeprefix("CONFIG_"))

    def enabled(self, name: str) -> bool:
        return self.get(name) in ("y", "m")

    def line(self, name: str) -> str:
        """How the option reads in the file, for citing it in messages."""
        name = name.removeprefix("CONFIG_")
        value = self.get(name)
        if value is None:
            return f"CONFIG_{name} absent"
        return f"CONFIG_{name} is not set" if value == "n" else f"CONFIG_{name}={value}"


def parse(text: str, source: str = "unknown") -> KernelConfig:
    options = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            options[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            options[m.group(1)] = "n"
    return KernelConfig(options, source)


def load(path: Path | None) -> KernelConfig:
    if path is None or not path.exists():
        return KernelConfig({}, "no config available")
    return parse(path.read_text(errors="replace"), str(path))
