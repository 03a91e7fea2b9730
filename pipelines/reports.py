"""The clean-zone reports over HTTP on 127.0.0.1, beside the Dagster UI.

Why: the fieldwork quality report (``clean/<ISO>/report.html``: progress by PSU, the
enumerator dashboard, AAPOR rates by stratum) is what a data manager reads after the morning
view, and a path to copy out of the UI is not a link. ``dhsurvey ui`` serves each country's
report at ``<reports URL>/<ISO>/report.html`` (the UI's port + 1 unless told otherwise) and
hands the address to the code location, whose asset metadata links there.

Only the reports are served, and only on the loopback interface: they hold counts, rates,
rule names and enumerator codes (:mod:`dhsurvey.validate.disclosure`), never the restricted
listings, the data or the Data Docs (which may quote values). Any other path is a 404.
"""

from __future__ import annotations

import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dhsurvey.store import Store

#: The variable ``dhsurvey ui`` sets for the code location: the reports' base URL.
REPORTS_URL_ENV = "DHSURVEY_REPORTS_URL"
#: Where ``dhsurvey ui`` on its default port (3000) serves them.
DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"
_PAGE = re.compile(r"^/([A-Z]{3})/report\.html$")


def report_page(iso: str) -> str:
    """The country's report relative to the reports' base URL."""
    return f"{iso}/report.html"


def _handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Reports(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                return self._send(_index(store).encode())
            match = _PAGE.match(path)
            report = store.report(match.group(1)) if match else None
            if report is None:
                return self.send_error(404, "no such report")
            return self._send(report.read_bytes())

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the UI's console is for Dagster; requests are not worth a line each

    return Reports


def _index(store: Store) -> str:
    items = "".join(f'<li><a href="{report_page(iso)}">{html.escape(iso)}</a></li>'
                    for iso in store.countries_with_reports())
    return ("<!doctype html><meta charset='utf-8'><title>Fieldwork quality reports</title>"
            f"<h1>Fieldwork quality reports</h1><ul>{items or '<li>none yet</li>'}</ul>")


def serve_reports(root: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve the reports of the data root ``root`` in a background thread; ``shutdown()``
    stops it."""
    server = ThreadingHTTPServer((host, port), _handler(Store(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="reports", daemon=True).start()
    return server
