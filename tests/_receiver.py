"""A notification receiver on 127.0.0.1 for the notify tests: a Slack-style or CloudEvents
endpoint that records each POST (path, headers, JSON body) and answers with the statuses a test
scripts, or one that accepts connections and never answers (`hang=True`)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Received:
    def __init__(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.body = body
        self.at = time.time()

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """`statuses`: the answers in order (the last repeats); `retry_after`: the Retry-After of a 429."""

    def __init__(self, statuses: tuple[int, ...] = (200,), *, hang: bool = False, retry_after: str = "") -> None:
        self.statuses = list(statuses)
        self.retry_after = retry_after  # sent with each 429
        self.received: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._release = threading.Event()
        self._hung: list[socket.socket] = []
        receiver = self
        if hang:
            self._sock = socket.create_server(("127.0.0.1", 0))
            self._sock.settimeout(0.2)
            self.port = self._sock.getsockname()[1]
            self._thread = threading.Thread(target=self._accept_forever, daemon=True)
            self._server: ThreadingHTTPServer | None = None
        else:
            class Handler(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def log_message(self, format: str, *args: Any) -> None:
                    pass

                def do_POST(self) -> None:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length)
                    with receiver.lock:
                        receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                          body))
                        status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                    answer = b"ok" if status < 300 else json.dumps({"message": f"refused with {status}"}).encode()
                    self.send_response(status)
                    if status == 429 and receiver.retry_after:
                        self.send_header("Retry-After", receiver.retry_after)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._server.daemon_threads = True
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _accept_forever(self) -> None:
        while not self._release.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with self.lock:
                self.connections += 1
                self._hung.append(conn)  # read nothing, answer nothing

    def bodies(self, where: Callable[[Any], bool] = lambda _b: True) -> list[Any]:
        with self.lock:
            return [r.json() for r in self.received if where(r.json())]

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        else:
            self._sock.close()
            for conn in self._hung:
                conn.close()
        self._thread.join(timeout=10)
