"""A fake Prometheus HTTP API that answers what a hostile or broken server would: infinities,
NaN, garbage, or nothing at all (a hang, bounded: `close()` releases it). The point of these
tests is the broken peer, so a fake is the right part here; the real Prometheus is tested in
test_rollout.py and test_prometheus_env.py."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = None  # an `answer` returning this makes the server hang until close() (at most HANG_LIMIT s)
HANG_LIMIT = 60.0


def vector(value: str) -> bytes:
    """One series with one sample, as the HTTP API writes it."""
    return json.dumps({"status": "success", "data": {"resultType": "vector",
                                                     "result": [{"metric": {}, "value": [1700000000.0, value]}]}}).encode()


def success(data: Any) -> bytes:
    return json.dumps({"status": "success", "data": data}).encode()


class HostilePrometheus:
    """`answer(query) -> body` for POST /api/v1/query (HANG: no answer); no firing alerts."""

    def __init__(self, answer: Callable[[str], bytes | None]) -> None:
        self.queries: list[str] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: bytes | None) -> None:
                if body is None:
                    fake.released.wait(HANG_LIMIT)
                    body = b'{"status": "error", "errorType": "unavailable", "error": "released"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                query = (form.get("query") or [""])[0]
                with fake._lock:
                    fake.queries.append(query)
                self._reply(answer(query))

            def do_GET(self) -> None:
                if self.path.startswith("/api/v1/alerts"):
                    self._reply(success({"alerts": []}))
                else:
                    self._reply(b"Prometheus Server is Ready.\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a hang breaks the pipe: expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hostile-prometheus", daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.queries)

    def close(self) -> None:
        self.released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
