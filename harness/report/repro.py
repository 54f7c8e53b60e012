"""A failing scenario as a script anyone can run without memhp: bash, ssh and the same QEMU.

It boots the guest cold with memhp's QEMU command line (QMP on a loopback TCP port, the
console to a file, SSH forwarded as memhp does), sends the scenario's QMP commands in order
over bash's /dev/tcp, waits for the events memhp waited for, runs its guest commands over
ssh, and ends with memhp's failing check in shell, expected against what this kernel shows
now. Exit status: 1 the failure reproduced, 0 the kernel did what memhp expects, 2 nothing
of this failure can be checked in shell (the expected vs seen text is in the header), 3 the
guest did not come up.

Checks in shell: harness.hotplug.effects' findings in /proc/zoneinfo, /proc/vmstat,
/proc/meminfo and memory block sysfs (the change the failing step must make, read right
before it and after, as memhp reads it; or the value after), and a kernel-exercising command
that failed. Page-flag histograms and the like stay in the header, for the reader.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.qemu.accel import Accel
from harness.qemu.config import MachineConfig
from harness.report.results import Result
from harness.transcript import Step

REPRO_DIR = "repro"
# Placeholders in QEMU's arguments, each a shell variable of the script.
_VARS = {"@DIR@": "${dir}", "@SSH@": "${ssh_port}", "@QMP@": "${qmp_port}", "@IMAGE@": "${IMAGE}"}
_SSH_SENTINEL = 1  # a port number no real run uses, replaced by @SSH@
# QMP commands that only read: left out (the script's waits stand for memhp's polls)
_READS = re.compile(r"^(query-|qom-get$|qom-list)")
_FINDING = re.compile(r"^\s*(/\S+(?: [^:]+)?): expected (.+?), seen (.+)$", re.M)
_ZONEINFO = re.compile(r"^/proc/zoneinfo Node (\d+) (\w+) (present|managed|spanned)$")
_KEYED = re.compile(r"^/proc/(vmstat|meminfo) (\w+)$")
_WRITES = re.compile(r">\s*/(sys|proc)/")
_SYSFS = re.compile(r"^(/sys/devices/system/memory/memory\d+/\w+)$")


def write(
    results_dir: Path,
    result: Result,
    config: MachineConfig,
    accel: Accel,
    steps: Sequence[Step],
) -> Path:
    """DIR/repro/<slug>.sh for ``result``; returns its path."""
    path = results_dir / REPRO_DIR / f"{result.slug}.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(result, config, accel, steps))
    path.chmod(0o755)
    return path


def script(result: Result, config: MachineConfig, accel: Accel, steps: Sequence[Step]) -> str:
    qemu = config.qemu_build()
    image = config.image
    failing = _failing_command(steps, result)
    checks = [
        Check.of(n, where, expected)
        for n, (where, expected, _) in enumerate(findings(result.log_excerpt))
    ]
    last_act = max((i for i, s in enumerate(steps) if _acts(s)), default=-1)
    body = []
    for i, step in enumerate(steps):
        if i == last_act:  # the step the findings are about: their values before it
            body += [c.before() for c in checks if c.delta is not None]
        body.append(_step(step, step is failing))
    header = [
        "#!/usr/bin/env bash",
        f"# memhp repro: {result.scenario} on {result.arch} {result.kernel} "
        f"({result.release}), QEMU {result.qemu} ({result.qemu_spec}, {result.accel})",
        f"# memhp said: {result.message}",
        *(f"#   {line}" for line in result.log_excerpt.split("\n--- ")[0].splitlines()[:40]),
        "#",
        "# Needs bash, ssh and this QEMU; the image is memhp's (rebuild it with",
        f"#   memhp image build --arch {result.arch} --kernel {result.kernel}).",
        "# memhp ran the scenario on a guest of this configuration (maybe restored from a",
        "# saved boot, maybe shared with scenarios that leave it as they found it); this",
        "# boots it cold. Exit: 1 reproduced, 0 not (the kernel did what memhp expects),",
        "# 2 nothing to check in shell (compare by eye with the lines above), 3 no guest.",
        "set -u",
        f"QEMU=${{QEMU:-{shlex.quote(qemu.argv[0])}}}",
        "dir=$(mktemp -d /tmp/memhp-repro.XXXXXX)",
        "# IMAGE=DIR runs it on another memhp image (e.g. the same kernel without the patch)",
        f"IMAGE=${{IMAGE:-{shlex.quote(str(image.path))}}}",
        'KEY="$dir/key"; install -m 600 "$IMAGE/id_ed25519" "$KEY" || { rm -rf "$dir"; exit 3; }',
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(qemu.env.items())),
    ]
    launch = " \\\n    ".join(['"$QEMU"', *_paired([*qemu.argv[1:], *_qemu_args(config, accel)])])
    return "\n".join(
        [
            *header,
            _PRELUDE,
            launch + ' > "$dir/qemu.log" 2>&1 &',
            _CONNECT,
            *body,
            'echo "--- memhp\'s failing check ---"',
            *(c.after() for c in checks),
            _END,
        ]
    )


def findings(text: str) -> list[tuple[str, str, str]]:
    """(where, expected, seen) of each finding in a failure's text (effects.Finding's form)."""
    return [(m[1].strip(), m[2].strip(), m[3].strip()) for m in _FINDING.finditer(text)]


def _qemu_args(config: MachineConfig, accel: Accel) -> list[str]:
    """memhp's arguments for a cold boot, with the script's sockets and directory."""
    cold = replace(config, restore_from=None)
    args = cold.qemu_args(
        qemu=cold.qemu_build(),
        name="memhp-repro",
        accel=accel,
        qmp_fd=-1,
        console_fd=-2,
        ssh_port=_SSH_SENTINEL,
        workdir=Path("@DIR@"),
    )
    swaps = (
        ("socket,id=mon,fd=-1", "socket,id=mon,host=127.0.0.1,port=@QMP@,server=on,wait=off"),
        ("socket,id=con,fd=-2", "file,id=con,path=@DIR@/console.log"),
        (f"127.0.0.1:{_SSH_SENTINEL}-:22", "127.0.0.1:@SSH@-:22"),
        (str(config.image.path), "@IMAGE@"),
    )
    out = []
    for a in args:
        for old, new in swaps:
            a = a.replace(old, new)
        out.append(a)
    return out


def _paired(args: list[str]) -> list[str]:
    """Shell words, an option and its value on one line."""
    lines: list[str] = []
    for a in args:
        if lines and lines[-1].startswith("-") and " " not in lines[-1] and not a.startswith("-"):
            lines[-1] += " " + _shell_arg(a)
        else:
            lines.append(_shell_arg(a))
    return lines


def _shell_arg(arg: str) -> str:
    """``arg`` quoted for the shell, its placeholders left to expand."""
    parts = re.split(r"(@DIR@|@SSH@|@QMP@|@IMAGE@)", arg)
    return "".join(_VARS[p] if p in _VARS else shlex.quote(p) for p in parts if p) or "''"


def _step(step: Step, must_succeed: bool) -> str:
    if step.kind == "qmp":
        if _is_read(step):
            return f"# (memhp read: {step.text})"
        command = {"execute": step.text, **({"arguments": step.data} if step.data else {})}
        return f"qmp {shlex.quote(json.dumps(command))}"
    if step.kind == "event":
        if not re.fullmatch(r"[A-Z_|]+", step.text):  # a wait the script cannot express
            return f"# (memhp waited for {step.text})"
        fragments = [
            json.dumps({key.split("__")[-1]: value})[1:-1]
            for key, value in step.data.items()
            if isinstance(value, str | int | bool)
        ]
        args = " ".join(shlex.quote(f) for f in fragments)
        return f"wait_event {shlex.quote(step.text)} {max(1, round(step.timeout))} {args}".rstrip()
    verb = "must_succeed" if must_succeed else "guest" if _acts(step) else "quietly"
    seen = f"  # memhp saw exit {step.status}" if step.status else ""
    return f"{verb} {shlex.quote(step.text)}{seen}"


def _failing_command(steps: Sequence[Step], result: Result) -> Step | None:
    """The kernel-exercising command whose failure failed the scenario, if that was it."""
    if not result.message.startswith("GuestCommandError"):
        return None
    failed = [s for s in steps if s.kind == "guest" and s.exercise and s.status]
    return failed[-1] if failed else None


def _acts(step: Step) -> bool:
    """A step that changes the machine: a QMP command other than a read, a guest command
    that exercises the kernel or writes to sysfs or procfs."""
    if step.kind == "qmp":
        return not _is_read(step)
    return step.kind == "guest" and (step.exercise or bool(_WRITES.search(step.text)))


def _is_read(step: Step) -> bool:
    command_line = str(step.data.get("command-line", ""))
    return bool(_READS.match(step.text)) or (
        step.text == "human-monitor-command" and command_line.startswith("info")
    )


@dataclass(frozen=True)
class Check:
    """One finding in shell: a probe printing the value in the guest, and either the change
    the failing step must make (``delta``, read before it and after) or the value after."""

    n: int
    where: str
    expected: str
    probe: str | None
    delta: int | None
    value: str | None

    @classmethod
    def of(cls, n: int, where: str, expected: str) -> Check:
        probe = None
        if m := _ZONEINFO.match(where):
            probe = (
                f'awk \'$1 == "Node" {{ z = ($2 == "{m[1]}," && $4 == "{m[2]}") }} '
                f'z && $1 == "{m[3]}" {{ print $2; exit }}\' /proc/zoneinfo'
            )
        elif m := _KEYED.match(where):
            key = f"{m[2]}:" if m[1] == "meminfo" else m[2]
            probe = f"awk '$1 == \"{key}\" {{ print $2 }}' /proc/{m[1]}"
        elif m := _SYSFS.match(where):
            probe = f"cat {m[1]}"
        delta = _delta(expected)
        value = re.match(r"^(-?\d+|[a-z_]+)\b", expected)
        return cls(n, where, expected, probe, delta, value[1] if value and delta is None else None)

    def before(self) -> str:
        return f"before_{self.n}=$(probe {shlex.quote(self.probe or 'true')})"

    def after(self) -> str:
        if self.probe is not None and self.delta is not None:
            return (
                f'check_delta {shlex.quote(self.where)} {self.delta} "$before_{self.n}" '
                f"{shlex.quote(self.probe)}"
            )
        if self.probe is not None and self.value is not None:
            where, value = shlex.quote(self.where), shlex.quote(self.value)
            return f"check {where} {value} {shlex.quote(self.probe)}"
        return f"no_check {shlex.quote(f'{self.where}: expected {self.expected}')}"


def _delta(expected: str) -> int | None:
    """The change a finding expects: "+131072 kB" itself, or the "(+7 x 32768)" and
    "(+1 x (32768 - 512 memmap))" that follow an absolute value; None for a value."""
    text = expected.split()[0] if expected.startswith(("+", "-")) else None
    if text is None and (m := re.search(r"\((.*)\)\s*$", expected)):
        text = m[1]
    if text is None:
        return None
    arithmetic = re.sub(r"[a-z_]+", "", text.replace(" x ", " * "))
    if not re.fullmatch(r"[\d\s+*()-]+", arithmetic):
        return None
    try:
        return int(_evaluate(ast.parse(arithmetic.strip(), mode="eval").body))
    except (SyntaxError, ValueError):
        return None


def _evaluate(node: ast.expr) -> int:
    """+, -, * over integers: the arithmetic a finding's expected text shows."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
        a, b = _evaluate(node.left), _evaluate(node.right)
        return (
            a + b
            if isinstance(node.op, ast.Add)
            else a - b
            if isinstance(node.op, ast.Sub)
            else a * b
        )
    raise ValueError("not the arithmetic of a finding")


_PRELUDE = r"""
ssh_port=$((20000 + RANDOM % 20000)); qmp_port=$((40000 + RANDOM % 20000))
reproduced=0 checked=0 unchecked=0
finish() {
    [ -n "${qemu_pid:-}" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
    rm -rf "$dir"
}
trap finish EXIT
qmp() {  # one command; events that arrive meanwhile go to $dir/events
    echo "> $1"; echo "$1" >&3
    local line
    while IFS= read -r -t 60 line <&3; do
        case $line in
            *'"event"'*) echo "$line" >> "$dir/events" ;;
            *) echo "< $line"; return ;;
        esac
    done
    echo "no answer from QMP"; exit 3
}
wait_event() {  # NAME[|NAME...] TIMEOUT [FRAGMENT...]: the first since the last wait
    local name=$1 timeout=$2 line f n ok; shift 2
    local end=$((SECONDS + timeout))
    while :; do
        while IFS= read -r line; do
            ok=0
            for n in ${name//|/ }; do case $line in *"\"event\": \"$n\""*) ok=1 ;; esac; done
            for f in "$@"; do case $line in *"$f"*) ;; *) ok=0 ;; esac; done
            if [ $ok = 1 ]; then echo "event: $line"; : > "$dir/events"; return 0; fi
        done < "$dir/events"
        [ $SECONDS -ge $end ] && { echo "no $name $* within $timeout s"; return 1; }
        IFS= read -r -t 1 line <&3 && echo "$line" >> "$dir/events"
    done
}
guest() {  # a command in the guest, as memhp ran it
    echo "$ $1"
    ssh -q -i "$KEY" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=10 root@127.0.0.1 "$1"
}
quietly() {  # memhp's own reads and set-up: their output to $dir/reads.log
    guest "$1" >> "$dir/reads.log" 2>&1
}
must_succeed() {  # the command whose failure failed the scenario
    guest "$1" && { echo "  it succeeded now"; return 0; }
    echo "  FAILED (exit $?): the failure reproduced"; reproduced=1
}
probe() {  # a value in the guest
    ssh -q -i "$KEY" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=10 root@127.0.0.1 "$1" 2>&1 | tail -n 1
}
check_delta() {  # WHERE DELTA BEFORE PROBE: the change the failing step must make
    local after; after=$(probe "$4"); checked=1
    local change=$((after - $3))
    if [ "$change" = "$2" ]; then echo "OK   $1: $3 -> $after, a change of $change as expected"
    else echo "FAIL $1: $3 -> $after, a change of $change, expected $2"; reproduced=1; fi
}
check() {  # WHERE EXPECTED PROBE: memhp's failing check, on this kernel
    local seen; seen=$(probe "$3"); checked=1
    if [ "$seen" = "$2" ]; then echo "OK   $1: $seen"
    else echo "FAIL $1: expected $2, seen $seen"; reproduced=1; fi
}
no_check() { echo "not checked in shell: $1"; unchecked=1; }
touch "$dir/events"
""".strip("\n")

_CONNECT = r"""
qemu_pid=$!
for _ in $(seq 100); do { exec 3<>"/dev/tcp/127.0.0.1/$qmp_port"; } 2>/dev/null && break
    sleep 0.1; done
{ : >&3; } 2>/dev/null || { echo "QEMU did not start:"; cat "$dir/qemu.log"; exit 3; }
IFS= read -r -t 30 greeting <&3 && qmp '{"execute": "qmp_capabilities"}'
for _ in $(seq 120); do ssh -q -i "$KEY" -p "$ssh_port" -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 root@127.0.0.1 true 2>/dev/null && break
    sleep 1; done || true
guest true > /dev/null || { echo "no SSH; console:"; tail -n 30 "$dir/console.log"; exit 3; }
echo "--- the scenario's steps ---"
""".strip("\n")

_END = r"""
echo "--- verdict ---"
if [ $reproduced = 1 ]; then echo "reproduced: the kernel fails as memhp saw"; exit 1; fi
if [ $checked = 0 ] || [ $unchecked = 1 ]; then
    echo "nothing (or not all) of this failure is checked in shell: compare with the header"; exit 2
fi
echo "not reproduced: the kernel did what memhp expects"; exit 0
""".strip("\n")
