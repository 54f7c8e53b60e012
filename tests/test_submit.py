"""--submit: a real KCIDB-shaped REST endpoint on 127.0.0.1 gets the document with the token,
and without credentials the command says what to set before anything runs."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cli
from harness.report import submit
from harness.report.results import Result, save
from harness.verdict import Status


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[tuple[str, dict[str, object]]]]]:
    got: list[tuple[str, dict[str, object]]] = []

    class Submit(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers["Authorization"], json.loads(body)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Submit)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://s3cret@127.0.0.1:{server.server_address[1]}/submit", got
    finally:
        server.shutdown()
        server.server_close()


def _results(d: Path) -> Path:
    save(
        Result(
            nodeid="testcases/test_dimm.py::test_dimm_remove[x86_64-debian:6.12]",
            scenario="test_dimm_remove",
            arch="x86_64",
            kernel="debian:6.12",
            status=Status.PASS,
            phase="call",
            start_time=0.0,
            duration=1.0,
        ),
        d,
    )
    return d


def test_merge_submits_to_the_kcidb_rest_endpoint_with_the_token(
    endpoint: tuple[str, list[tuple[str, dict[str, object]]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = endpoint
    monkeypatch.setenv(submit.REST_ENV, url)

    assert (
        cli.main(
            [
                "report",
                "merge",
                str(_results(tmp_path / "a")),
                "--out",
                str(tmp_path / "m"),
                "--submit",
            ]
        )
        == 0
    )

    ((auth, doc),) = got
    assert auth == "Bearer s3cret"
    assert doc["version"] == {"major": 5, "minor": 3} and len(doc["tests"]) == 1  # type: ignore[arg-type]


def test_submit_without_credentials_names_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in (submit.REST_ENV, submit.PROJECT_ENV, submit.TOPIC_ENV):
        monkeypatch.delenv(var, raising=False)

    code = cli.main(
        ["report", "merge", str(_results(tmp_path / "a")), "--out", str(tmp_path / "m"), "--submit"]
    )

    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KCIDB_REST=https://TOKEN@HOST/submit" in err[0]
    assert not (tmp_path / "m").exists()  # nothing ran
