"""SSH keys of an image: a client key for the harness, a host key the harness pins."""

from __future__ import annotations

import struct
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def make_keys(root: Path, out: Path) -> None:
    """A fresh client key and guest host key per image: root logs in by key only, and the
    harness pins the host key (no AutoAddPolicy)."""
    client = Ed25519PrivateKey.generate()
    (out / "id_ed25519").write_bytes(
        client.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    (out / "id_ed25519").chmod(0o600)
    client_pub = (
        client.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    (out / "id_ed25519.pub").write_text(client_pub + "\n")
    ssh = root / "root/.ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text(client_pub + "\n")
    root.joinpath("root").chmod(0o700)
    ssh.chmod(0o700)

    host = Ed25519PrivateKey.generate()
    seed = host.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pub = host.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keydir = root / "etc/dropbear"
    keydir.mkdir(parents=True)
    # dropbear's own key format (bookworm's dropbear cannot read OpenSSH keys):
    # string "ssh-ed25519", string (seed || public key).
    (keydir / "dropbear_ed25519_host_key").write_bytes(
        _sshstr(b"ssh-ed25519") + _sshstr(seed + pub)
    )
    (keydir / "dropbear_ed25519_host_key").chmod(0o600)
    host_pub = (
        host.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    (out / "host_key.pub").write_text(host_pub + "\n")


def _sshstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data
