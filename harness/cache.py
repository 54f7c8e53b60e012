"""Where memhp keeps downloads and images: $MEMHP_CACHE, else $XDG_CACHE_HOME/memhp."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "MEMHP_CACHE"


def root() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memhp"


def path(*parts: str) -> Path:
    return root().joinpath(*parts)
