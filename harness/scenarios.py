"""How memhp's scenarios are run: one pytest command line, for ``memhp run``, series
verify, bisect and the nightly tests alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.resources import TESTCASES

# The long suites have their own commands (README: nightly); a later -m of the user's wins.
DEFAULT_MARKERS = "not kbuild and not flavours and not newkernels and not arches"


@dataclass(frozen=True)
class Selection:
    """Which scenarios, on which targets, reported where."""

    kernels: tuple[str, ...] = ()  # empty: each arch's Debian matrix
    arches: tuple[str, ...] = ()  # empty: preflight.DEFAULT_ARCHES
    qemus: tuple[str, ...] = ()  # QEMU specs; empty: the host's (and the default matrix's)
    accel: str | None = None
    expects: tuple[str, ...] = ()
    lock: Path | None = None
    results: Path | None = None  # --memhp-results, and junit.xml in it
    select: str | None = None  # pytest -k
    shard: str | None = None  # K/N
    files: tuple[str, ...] = ()  # scenario files (testcases/ names); empty: all
    durations_from: tuple[Path, ...] = ()
    workers: int = 0  # pytest-xdist -n; 0 or 1: one process
    workers_said: str = ""  # how many and why, said once the run's input is checked
    maxfail: int = 0  # stop after this many failures; 0: run everything
    repeat: int = 0  # reruns of each failing scenario on fresh guests

    def pytest_args(self) -> list[str]:
        args = [
            *([str(TESTCASES / f) for f in self.files] or [str(TESTCASES)]),
            "-p",
            "no:cacheprovider",
            "-m",
            DEFAULT_MARKERS,
            # as pyproject.toml sets them, for an installed memhp (no pyproject there)
            "-o",
            "junit_family=xunit2",
            "-o",
            "junit_logging=log",
            "-o",
            "log_level=DEBUG",
            # memhp imports harness before pytest loads the plugin: nothing to rewrite
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
        ]
        args += [a for spec in self.kernels for a in ("--memhp-kernel", spec)]
        args += [a for arch in self.arches for a in ("--memhp-arch", arch)]
        args += [a for qemu in self.qemus for a in ("--memhp-qemu", qemu)]
        args += [a for expect in self.expects for a in ("--memhp-expect", expect)]
        if self.accel:
            args += ["--memhp-accel", self.accel]
        if self.lock:
            args += ["--memhp-lock", str(self.lock)]
        if self.results:
            args += [
                "--memhp-results",
                str(self.results),
                "--junitxml",
                str(self.results / "junit.xml"),
            ]
        if self.select:
            args += ["-k", self.select]
        if self.shard:
            args += ["--memhp-shard", self.shard]
        args += [a for d in self.durations_from for a in ("--memhp-durations-from", str(d))]
        if self.workers > 1:
            args += ["-n", str(self.workers)]
        if self.workers_said:
            args += ["--memhp-workers-said", self.workers_said]
        if self.repeat > 0:
            args += ["--memhp-repeat", str(self.repeat)]
        if self.maxfail > 0:
            args += ["--maxfail", str(self.maxfail)]
        return args


def check_pytest_args(args: list[str]) -> None:
    """What pytest would refuse, refused first in memhp's words (UsageError, one line): an
    argument pytest does not know, a -k or -m expression that does not parse. pytest's own
    answer is its usage text and exit status 4, which memhp's callers do not expect."""
    import pytest
    from _pytest.config import _prepareconfig  # pytest's own parse, without running
    from _pytest.mark.expression import Expression

    try:
        config = _prepareconfig(list(args))
    except pytest.UsageError as exc:
        lines = [ln for ln in str(exc).splitlines() if "error:" in ln] or [str(exc)]
        raise UsageError(
            f"pytest refuses the arguments: {lines[0].split('error:', 1)[-1].strip()} "
            "(memhp run --help lists memhp's own; the rest go to pytest)"
        ) from None
    for flag, expr in (("-k", config.option.keyword), ("-m", config.option.markexpr)):
        if not expr:
            continue
        try:
            Expression.compile(expr)
        except Exception as exc:  # pytest raises SyntaxError (ParseError before 8.4)
            raise UsageError(f"{flag} {expr!r} is not a pytest expression: {exc}") from None
