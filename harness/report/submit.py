"""Submitting a KCIDB document to KernelCI, with KernelCI's own tools and endpoint: the
``kcidb-submit`` client when it is installed and configured, else the KCIDB REST endpoint
(``KCIDB_REST=https://TOKEN@HOST/submit``, the form KernelCI gives submitters and kci-dev
reads). memhp speaks no protocol of its own; without credentials it says what to set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness.errors import InfrastructureError, UsageError

REST_ENV = "KCIDB_REST"
PROJECT_ENV, TOPIC_ENV = "KCIDB_PROJECT", "KCIDB_TOPIC"  # kcidb-submit's -p and -t


def check_configured() -> None:
    """UsageError, naming what to set, unless a submission route is configured."""
    if os.environ.get(REST_ENV):
        _rest_endpoint(os.environ[REST_ENV])
        return
    if shutil.which("kcidb-submit") and os.environ.get(PROJECT_ENV) and os.environ.get(TOPIC_ENV):
        return
    raise UsageError(
        f"--submit needs KernelCI credentials: set {REST_ENV}=https://TOKEN@HOST/"
        f"submit (the token KernelCI gave you), or install kcidb and set "
        f"{PROJECT_ENV} and {TOPIC_ENV}"
    )


def submit(kcidb_json: Path) -> str:
    """Submit the document; what the service answered, in a line."""
    check_configured()
    doc = json.loads(kcidb_json.read_text())
    _validate(doc)
    if os.environ.get(REST_ENV):
        return _post(os.environ[REST_ENV], doc)
    proc = subprocess.run(
        ["kcidb-submit", "-p", os.environ[PROJECT_ENV], "-t", os.environ[TOPIC_ENV]],
        input=json.dumps(doc),
        text=True,
        capture_output=True,
    )
    if proc.returncode != 0:
        raise InfrastructureError(f"kcidb-submit failed: {proc.stderr.strip()[-500:]}")
    return f"kcidb-submit: {proc.stdout.strip() or 'submitted'}"


def _validate(doc: dict[str, Any]) -> None:
    try:
        import kcidb_io  # type: ignore[import-untyped]  # the schema, with the dev extra
    except ImportError:
        return
    kcidb_io.schema.V5_3.validate_exactly(doc)


def _rest_endpoint(value: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(value)
    if not parsed.username or not parsed.hostname:
        raise UsageError(f"{REST_ENV} is not of the form https://TOKEN@HOST/submit")
    netloc = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunsplit(
        (parsed.scheme, netloc, parsed.path or "/submit", "", "")
    ), parsed.username


def _post(value: str, doc: dict[str, Any]) -> str:
    url, token = _rest_endpoint(value)
    request = urllib.request.Request(
        url,
        data=json.dumps(doc).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return f"{url}: {reply.status} {reply.read(200).decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        raise InfrastructureError(f"KCIDB submission to {url} failed: {exc}") from exc
