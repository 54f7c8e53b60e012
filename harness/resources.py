"""Where memhp's own files are: the scenarios, the guest-image recipe, the kconfig fragments.

In a source checkout they are the top-level testcases/, guest-images/ and kconfigs/; an
installed wheel carries copies under harness/_resources/ (pyproject.toml maps them), so
``memhp run`` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _find(checkout_name: str, installed_name: str, marker: str) -> Path:
    for candidate in (_CHECKOUT / checkout_name, _PACKAGE / "_resources" / installed_name):
        if (candidate / marker).exists():
            return candidate
    return _CHECKOUT / checkout_name  # for the error message of whoever needs it


TESTCASES = _find("testcases", "testcases", "test_dimm.py")
RECIPE_DIR = _find("guest-images", "guest_images", "init")
KCONFIGS = _find("kconfigs", "kconfigs", "hotplug.config")
# The checkout, when memhp runs from one (child pytest processes start there).
CHECKOUT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else None
