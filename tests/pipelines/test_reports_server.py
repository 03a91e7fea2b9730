"""The reports served beside the UI: each country's quality report, nothing else."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dhsurvey.store import REPORT
from pipelines.reports import report_page, serve_reports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture
def served(tmp_path: Path):
    data = tmp_path / "data"
    (data / "clean" / "KEN").mkdir(parents=True)
    (data / "clean" / "KEN" / REPORT).write_text("<title>Fieldwork quality — KEN</title>")
    (data / "clean" / "KEN" / "history.parquet").write_bytes(b"PAR1 restricted")
    (data / "secrets").mkdir()
    (data / "secrets" / "demo-private.pem").write_text("-----BEGIN PRIVATE KEY-----")
    port = _free_port()
    server = serve_reports(data, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def test_a_countrys_report_is_served(served: str) -> None:
    status, body = _get(f"{served}/{report_page('KEN')}")
    assert status == 200 and "Fieldwork quality — KEN" in body
    status, index = _get(f"{served}/")
    assert status == 200 and 'href="KEN/report.html"' in index


@pytest.mark.parametrize("path", ["/UGA/report.html", "/KEN/history.parquet",
                                  "/KEN/../secrets/demo-private.pem",
                                  "/%2e%2e/secrets/demo-private.pem", "/clean/KEN/report.html",
                                  "/ken/report.html"])
def test_nothing_else_is_served(served: str, path: str) -> None:
    assert _get(served + path)[0] == 404
