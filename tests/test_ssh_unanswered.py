"""An sshd that opens sessions but never answers an exec request, as the guest's dropbear did
once a mutant kernel's Oops held a lock its fork needed: the harness must give up in bounded
time and call the guest lost, not wait for good (paramiko itself waits without a bound).

The server is a real SSH server on 127.0.0.1 (paramiko's server side), not a mock of the
client: only its answer to "exec" is withheld.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from harness.errors import VMLost
from harness.guest import shell
from harness.guest.shell import GuestShell

BOUND = 4 * shell.HEARTBEAT  # the exec request's bound, and then some


class _Withholding(paramiko.ServerInterface):
    def __init__(self, answer_exec: threading.Event) -> None:
        self.answer_exec = answer_exec

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.answer_exec.wait()  # the reply to "exec" is sent when this returns
        return False


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[GuestShell]:
    """A GuestShell connected to a server that withholds its answers to exec."""
    host_key = paramiko.RSAKey.generate(2048)
    client_key = paramiko.RSAKey.generate(2048)
    key_file = tmp_path / "id_rsa"
    client_key.write_private_key_file(str(key_file))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    release = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            t = paramiko.Transport(conn)
            transports.append(t)
            t.add_server_key(host_key)
            t.start_server(server=_Withholding(release))
            while t.is_active() and not release.is_set():
                chan = t.accept(0.5)
                if chan is not None:
                    pass  # sessions open; their exec requests go unanswered

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    shell = GuestShell(port, f"{host_key.get_name()} {host_key.get_base64()}", str(key_file))
    shell.connect(timeout=10)
    yield shell
    shell.close()
    release.set()
    for t in transports:
        t.close()
    thread.join(5)


def test_exec_request_never_answered_is_a_lost_guest_in_bounded_time(guest: GuestShell) -> None:
    start = time.monotonic()

    with pytest.raises(VMLost, match="did not start 'true'"):
        guest.run("true")

    assert time.monotonic() - start < BOUND


def test_liveness_probe_never_answered_says_no_in_bounded_time(guest: GuestShell) -> None:
    start = time.monotonic()

    assert not guest.answers()

    assert time.monotonic() - start < BOUND
