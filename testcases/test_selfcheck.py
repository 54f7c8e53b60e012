"""What the suite catches, measured (nightly, with the kernel builds: ``pytest -m kbuild``):
every one-line regression of harness.workflows.selfcheck.CORPUS, applied to Debian's
linux-source-6.12 and built, is caught by at least one scenario, and the unmutated kernel
passes them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.arch import X86_64
from harness.workflows import selfcheck

pytestmark = pytest.mark.kbuild


def test_selfcheck_catches_every_mutant(kernel_tree: Path, tmp_path: Path) -> None:
    result = selfcheck.run(kernel_tree, X86_64, tmp_path)

    print(result.table())
    assert not result.baseline_failures, result.table()
    assert not result.corpus_errors, result.table()  # each mutant builds and is compiled in
    assert result.rate == 1.0, result.table()
