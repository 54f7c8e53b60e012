"""The fault suite: each fault on a real QEMU guest, and what the harness must make of it.

Every test asserts the verdict's class (kernel FAIL, infrastructure ERROR/MISS, usage exit
2), a time bound, and that no QEMU process or private temp dir is left. Scenario-level
faults run tests/faults/scenarios.py in a child pytest with its own TMPDIR, so leftovers
are easy to find; the seconds each fault took to its verdict go into the JUnit properties
(bench/faults.py prints them as a table).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import images
from harness.arch import X86_64
from harness.errors import ImageError, LaunchError
from harness.images.image import Image
from harness.qemu import machine
from harness.qemu.accel import choose_accel
from harness.qemu.machine import MachineConfig, QemuMachine
from harness.report import compare
from harness.report.results import Result, load
from harness.verdict import Status

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "faults" / "scenarios.py"
KERNEL = "debian:6.12"
VERDICT_BOUND = 60.0  # a dead or frozen guest reaches its verdict within this (issue 10)
Record = Callable[[str, object], None]  # memhp's measure (JUnit suite properties)


@pytest.fixture(scope="module")
def image() -> Image:
    return images.build(KERNEL, X86_64)


@dataclass
class Child:
    returncode: int
    output: str
    seconds: float
    results: list[Result]
    results_dir: Path


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[Path]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    yield tmp
    assert _qemus_in(tmp) == [], "QEMU left running"
    assert sorted(p.name for p in tmp.glob("memhp-*")) == [], "machine dirs left behind"


def _qemus_in(tmp: Path) -> list[int]:
    """QEMU processes whose working directory (their machine dir) is under ``tmp``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().startswith("qemu") and os.readlink(
                proc / "cwd"
            ).startswith(str(tmp)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _child_cmd(select: str, results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(SCENARIOS),
        "-p",
        "no:cacheprovider",
        "-q",
        "-k",
        select,
        "--memhp-arch",
        "x86_64",
        "--memhp-kernel",
        KERNEL,
        "--memhp-results",
        str(results),
        "--junitxml",
        str(results / "junit.xml"),
        *extra,
    ]


def run_child(select: str, tmp: Path, tmp_path: Path, *extra: str) -> Child:
    results = tmp_path / "results"
    start = time.monotonic()
    proc = subprocess.run(
        _child_cmd(select, results, *extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
        timeout=600,
    )
    return Child(
        proc.returncode,
        proc.stdout + proc.stderr,
        time.monotonic() - start,
        load(results) if results.is_dir() else [],
        results,
    )


def only(child: Child, scenario: str) -> Result:
    found = [r for r in child.results if r.scenario == scenario]
    assert len(found) == 1, child.output[-4000:]
    return found[0]


# -- a guest that dies, freezes or panics -------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "says"),
    [
        ("test_qemu_killed", Status.ERROR, "QEMU exited"),
        ("test_qemu_stopped", Status.ERROR, "stopped (SIGSTOP?)"),
        ("test_qemu_stopped_during_command", Status.ERROR, "stopped (SIGSTOP?)"),
        ("test_guest_panics", Status.FAIL, "guest kernel panicked"),
        ("test_harness_bug", Status.ERROR, "KeyError: 'memhp_target'"),
        ("test_guest_tool_missing", Status.ERROR, "memhp-no-such-tool"),
        ("test_panic_during_cleanup", Status.FAIL, "guest kernel panicked"),
    ],
)
def test_fault_gets_its_verdict_in_bounded_time(
    scenario: str,
    status: Status,
    says: str,
    image: Image,
    tmpdir_env: Path,
    tmp_path: Path,
    measure: Record,
) -> None:
    child = run_child(scenario, tmpdir_env, tmp_path)

    result = only(child, scenario)
    measure("seconds_to_verdict", round(result.duration, 1))
    assert result.status is status, f"{result.status}: {result.message}\n{child.output[-3000:]}"
    assert says in result.message + result.log_excerpt, result.message
    assert result.duration <= VERDICT_BOUND, f"{result.duration:.0f} s to a verdict"
    assert child.returncode == (1 if status is Status.FAIL else 3), child.output[-2000:]
    if scenario.startswith("test_qemu"):
        assert "console tail" in result.log_excerpt  # a lost VM shows where the guest was
    if scenario == "test_harness_bug":  # whose bug it is, and where
        assert "a bug in memhp" in result.log_excerpt and "Traceback" not in result.message
        assert "scenarios.py" in result.log_excerpt, result.log_excerpt
    if scenario == "test_panic_during_cleanup":
        assert result.phase == "teardown", result


# -- a scenario that fails some of the times -------------------------------------------------


def test_repeat_tells_a_flaky_scenario_from_one_failing_every_time(
    image: Image, tmpdir_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--memhp-repeat 3 on a scenario that fails every other run and one that always fails:
    each is run 3 more times on fresh guests, and every report tells them apart."""
    monkeypatch.setenv("MEMHP_FAULT_RUNS", str(tmp_path / "runs"))
    child = run_child(
        "test_fails_every_other_run or test_fails_every_run",
        tmpdir_env,
        tmp_path,
        "--memhp-repeat",
        "3",
    )

    flaky, always = only(child, "test_fails_every_other_run"), only(child, "test_fails_every_run")
    assert (tmp_path / "runs").read_text() == "4", child.output[-3000:]  # 1 run + 3 reruns
    assert (flaky.status, flaky.repeats) == (Status.FAIL, ["PASS", "FAIL", "PASS"])
    assert flaky.repeat_summary() == "failed 2 of 4 runs (flaky)" and flaky.flaky
    assert (always.status, always.repeats) == (Status.FAIL, ["FAIL"] * 3)
    assert always.repeat_summary() == "failed 4 of 4 runs (every time)" and not always.flaky
    assert "test_fails_every_other_run[x86_64-debian:6.12]: failed 2 of 4 runs (flaky)" in (
        child.output
    )
    assert child.returncode == 1  # a flaky failure is still a failure

    tests = json.loads((child.results_dir / "kcidb.json").read_text())["tests"]
    repeats = {t["misc"]["nodeid"].rpartition("::")[2]: t["misc"]["repeats"] for t in tests}
    assert repeats["test_fails_every_other_run[x86_64-debian:6.12]"]["flaky"] is True
    assert repeats["test_fails_every_run[x86_64-debian:6.12]"]["flaky"] is False
    junit = (child.results_dir / "junit.xml").read_text()
    assert junit.count('name="memhp_repeat"') == 2 and "failed 2 of 4 runs (flaky)" in junit

    base = [dataclasses.replace(r, status=Status.PASS, repeats=[]) for r in child.results]
    c = compare.compare(base, child.results)
    assert [f.key[3] for f in c.flaky] == ["test_fails_every_other_run"]
    assert [f.key[3] for f in c.regressions] == ["test_fails_every_run"]
    assert "failed 2 of 4 runs (flaky)" in c.text()


# -- signals to the runner ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "xdist", "to_group"),
    [
        (signal.SIGTERM, ["-n", "2"], False),  # what CI sends; the workers hear it from us
        (signal.SIGINT, [], True),  # ^C in a terminal reaches the whole process group
    ],
    ids=["SIGTERM-xdist", "SIGINT"],
)
def test_signal_ends_the_run_cleanly_and_reports_what_finished(
    sig: signal.Signals,
    xdist: list[str],
    to_group: bool,
    image: Image,
    tmpdir_env: Path,
    tmp_path: Path,
    measure: Record,
) -> None:
    results = tmp_path / "results"
    mark, finished = tmp_path / "guest-up", tmp_path / "passes-finished"
    select = "test_passes or test_waits_for_a_signal"
    proc = subprocess.Popen(
        [*_DEFAULT_SIGINT, *_child_cmd(select, results, "-p", "finished", *xdist)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={
            **os.environ,
            "TMPDIR": str(tmpdir_env),
            "MEMHP_FAULT_MARK": str(mark),
            "MEMHP_FAULT_FINISHED": str(finished),  # tests/faults/finished.py
            "PYTHONPATH": str(SCENARIOS.parent),
            "PYTHONFAULTHANDLER": "1",  # SIGABRT then dumps every thread's stack
        },
    )
    try:
        # signal once one scenario is waiting and the runner has the other's last report
        deadline = time.monotonic() + 300
        while not (mark.exists() and finished.exists()) and proc.poll() is None:
            assert time.monotonic() < deadline, "the guests never came up"
            time.sleep(0.2)
        assert mark.exists() and finished.exists(), proc.communicate()[0][-3000:]
        start = time.monotonic()
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            output, _ = proc.communicate(timeout=VERDICT_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the run did not end within {VERDICT_BOUND:g} s of {sig.name}; "
                f"where it was:\n{_stacks(proc)}"
            )
        seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:  # our own child, by PID
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    measure("seconds_to_exit", round(seconds, 1))
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert "passed" in output.splitlines()[-1], output[-3000:]  # pytest's summary line
    said = f"INTERRUPTED by {sig.name}: 1 of 2 selected reached a verdict, 1 did not"
    assert said in output, output[-3000:]
    doc = json.loads((results / "kcidb.json").read_text())
    statuses = {t["path"].rsplit(".", 1)[-1]: t["status"] for t in doc["tests"]}
    assert statuses == {"passes": "PASS", "waits_for_a_signal": "MISS"}, doc["tests"]
    assert doc["builds"][0]["misc"]["memhp_runs"] == [said], doc["builds"]
    assert said in (results / "report.html").read_text()
    junit = (results / "junit.xml").read_text()
    assert said in junit and "waits_for_a_signal" in junit, junit[-2000:]


# A run started in the background by a shell without job control (`nohup sh -c '... &'`)
# inherits SIGINT ignored, and Python keeps it so: give the child a terminal's default.
_DEFAULT_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def _stacks(proc: subprocess.Popen[str]) -> str:
    """A hung child's output and Python stacks (it runs with PYTHONFAULTHANDLER)."""
    proc.send_signal(signal.SIGABRT)
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        return "(no stack dump within 20 s of SIGABRT)"
    return output[-8000:]


# -- launch and image faults (in this process) ---------------------------------------------


def test_port_taken_before_qemu_binds_it_is_retried(
    image: Image, tmpdir_env: Path, monkeypatch: pytest.MonkeyPatch, measure: Record
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = machine._free_port
    monkeypatch.setattr(machine, "_free_port", lambda: next(ports, None) or real())
    monkeypatch.setenv("TMPDIR", str(tmpdir_env))
    monkeypatch.setattr("tempfile.tempdir", None)
    try:
        with QemuMachine(MachineConfig(arch=X86_64, image=image)) as m:
            assert m.port != taken.getsockname()[1]
            assert m.guest is not None and m.guest.run("true").status == 0
            measure("seconds_to_verdict", round(m.boot_seconds, 1))
    finally:
        taken.close()


def test_qemu_that_cannot_start_is_a_launch_error_with_its_message(
    image: Image,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    measure: Record,
) -> None:
    broken = _copy(image, tmp_path / "image")
    broken.kernel.write_bytes(b"\x7fELF" + b"\0" * 60)  # an ELF header and nothing else
    monkeypatch.setenv("TMPDIR", str(tmpdir_env))
    monkeypatch.setattr("tempfile.tempdir", None)
    start = time.monotonic()

    with pytest.raises(LaunchError) as exc:
        QemuMachine(MachineConfig(arch=X86_64, image=broken)).start()

    measure("seconds_to_verdict", round(time.monotonic() - start, 1))
    assert "QEMU did not start" in str(exc.value)
    assert "qemu-system-x86_64" in exc.value.cmdline


def test_image_cut_short_after_its_check_is_an_image_error_not_a_kernel_failure(
    image: Image,
    tmp_path: Path,
    tmpdir_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    measure: Record,
) -> None:
    cut = _copy(image, tmp_path / "image")
    data = cut.initramfs.read_bytes()
    cut.initramfs.write_bytes(data[: len(data) // 8])
    monkeypatch.setenv("TMPDIR", str(tmpdir_env))
    monkeypatch.setattr("tempfile.tempdir", None)
    start = time.monotonic()

    with pytest.raises(ImageError, match=r"initramfs\.cpio"):
        QemuMachine(MachineConfig(arch=X86_64, image=cut)).start()

    measure("seconds_to_verdict", round(time.monotonic() - start, 1))
    assert time.monotonic() - start <= VERDICT_BOUND


def _copy(image: Image, dest: Path) -> Image:
    shutil.copytree(image.path, dest)
    return Image.load(dest)


# -- bad input -------------------------------------------------------------------------------


def _memhp(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode, lines, time.monotonic() - start


def _path_without_qemu(tmp_path: Path) -> str:
    """A PATH with what memhp needs but no QEMU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "depmod", "dpkg-deb", "apt-get", "zstd", "gpgv"):
        found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["run", "--kernel", "debian:9.9"], {}, "no Debian amd64 kernel package matches"),
        (["run", "--kernel", "foo:bar"], {}, "neither debian:X.Y nor an existing kernel file"),
        (["run", "--kernel", "build:/nonexistent"], {}, "is not a directory"),
        (["run", "--expect", "memmap_init=sometimes"], {}, "memmap_init is one of"),
        (["run", "--expect", "nosuch=1"], {}, "give NAME=VALUE"),
        (["run", "--accel", "kvm"], {}, "KVM was requested but cannot be used"),
        (["run"], {"MEMHP_CACHE": "/proc/memhp-cache"}, "is not writable"),
        (["run", "--arch", "x86_64"], {"PATH": "NO_QEMU"}, "qemu-system-x86_64 not found"),
        (["run", "--no-such-option"], {}, "unrecognized arguments: --no-such-option"),
        (["run", "-k", "dimm and"], {}, "-k 'dimm and' is not a pytest expression"),
    ],
    ids=[
        "unknown-line",
        "unknown-spec",
        "bad-build-dir",
        "bad-expect-value",
        "bad-expect-name",
        "kvm-unusable",
        "unwritable-cache",
        "no-qemu",
        "argument-pytest-refuses",
        "bad-k-expression",
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_boot(
    args: list[str],
    env: dict[str, str],
    says: str,
    tmp_path: Path,
    tmpdir_env: Path,
    measure: Record,
) -> None:
    if env.get("PATH") == "NO_QEMU":
        env = {"PATH": _path_without_qemu(tmp_path)}
    if "--accel" in args and choose_accel(X86_64, "auto").name == "kvm":
        pytest.skip("KVM works here")

    code, lines, seconds = _memhp(*args, env={**env, "TMPDIR": str(tmpdir_env)})

    measure("seconds_to_verdict", round(seconds, 1))
    assert code == 2, lines
    assert len(lines) == 1 and says in lines[0], lines  # nothing booted: no boot said so
