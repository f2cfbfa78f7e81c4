"""The controller's HTTP endpoints: /healthz, /readyz, /metrics, /webhook and /alerts, and the
read-only web UI (agent.ui.UiApp) at every other path when it is on (or on a server of its own,
`--ui-addr`: then this one does not serve it).

A stdlib `ThreadingHTTPServer` in a background thread: the surface is four small endpoints, so
a web framework would add a dependency and nothing else. What the stdlib server lacks is
added here: a per-read timeout and a deadline per connection (a slow client cannot hold a
thread), a cap on concurrent connections, a body limit checked before the body is read, request
logs through `logging` instead of stderr, and a `stop()` that leaves no thread behind.

/webhook answers 404 when no secret is configured: an endpoint that anyone could trigger would
let anyone make the controller fetch and sync at will, so without a secret it does not exist.
/alerts (Alertmanager's webhook receiver, which can end a rollout or start a Job) likewise: it
takes `Authorization: Bearer <the same secret>` and answers 404 without one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from agent.controller._alerts import FiringAlert, bearer_ok, parse_alertmanager
from agent.controller._metrics import CONTENT_TYPE, Metrics
from agent.controller._webhook import MAX_BODY_BYTES, verify_and_parse
from agent.output import visible
from agent.source import redact_urls
from agent.ui import Request, UiApp

log = logging.getLogger("agent.controller.http")

Check = Callable[[], tuple[bool, str]]
"""A probe: (True, anything) when fine, (False, reason) when not."""

OnPush = Callable[[str | None], None]
"""Called from a request thread on an authenticated push to the branch, with the pushed commit
(None when the payload named none); must return quickly (set an event, enqueue), not sync."""

OnAlerts = Callable[[list[FiringAlert]], None]
"""Called from a request thread with the firing alerts of an authenticated Alertmanager
delivery; must return quickly (hand them to the loop), not act on them."""

_READ_ENDPOINTS = ("/healthz", "/readyz", "/metrics")
_DIGITS = re.compile(r"[0-9]{1,18}")
_DRAIN_BYTES = 256 * 1024  # after an early 413, read at most this much so the client sees the answer
_DRAIN_SECONDS = 1.0


def _shown_reason(reason: str, limit: int = 300) -> str:
    """A check's reason as /readyz?verbose may show it: no URL user info, one line, escaped."""
    text = visible(" ".join(redact_urls(reason).split()))
    return text if len(text) <= limit else text[:limit] + "…"


def parse_http_addr(addr: str) -> tuple[str, int]:
    """`--http-addr` as (host, port): ``host:port``, ``[v6]:port``, or ``:port`` (all interfaces)."""
    m = re.fullmatch(r"(?:\[([^\]]*)\]|([^:\[\]]*)):([0-9]{1,5})", addr.strip())
    if m is None or int(m.group(3)) > 65535:
        raise ValueError(f"not an address host:port: {addr!r}")
    host = m.group(1) if m.group(1) is not None else m.group(2)
    return (host or "0.0.0.0", int(m.group(3)))


class HttpServer:
    """The controller's HTTP server; binds on `start()`, `port` is the bound port (useful with 0)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        health: Check,
        ready: Check,
        metrics: Metrics | None = None,
        webhook_secret: bytes | None = None,
        branch: str = "main",
        on_push: OnPush | None = None,
        on_alerts: OnAlerts | None = None,
        request_timeout: float = 10.0,
        request_deadline: float = 30.0,
        max_body: int = MAX_BODY_BYTES,
        max_connections: int = 64,
        ui: UiApp | None = None,
        ui_only: bool = False,
    ) -> None:
        if webhook_secret is not None and not webhook_secret:
            raise ValueError("an empty webhook secret authenticates nothing; pass None to disable the webhook")
        if webhook_secret is not None and on_push is None:
            raise ValueError("a webhook secret needs an on_push callback")
        self.host = host
        self.health = health
        self.ready = ready
        self.metrics = metrics
        self.webhook_secret = webhook_secret
        self.branch = branch
        self.on_push = on_push
        self.on_alerts = on_alerts
        self.request_timeout = request_timeout
        self.request_deadline = request_deadline
        self.max_body = max_body
        self.max_connections = max_connections
        self.ui = ui
        self.ui_only = ui_only and ui is not None  # a server of the UI alone (--ui-addr)
        self.ui_server: HttpServer | None = None  # the UI's own server, stopped with this one
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a background thread. Raises OSError when the address is taken."""
        if self._server is not None:
            raise RuntimeError("the HTTP server is already started")
        server = _Server((self.host, self._requested_port), self)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="agent-http", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("serving HTTP on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, cut open connections, close the socket and join every thread."""
        server, thread = self._server, self._thread
        if self.ui_server is not None:
            self.ui_server.stop(timeout)
        if server is None or thread is None:
            return
        if self.ui is not None:
            self.ui.close()  # wakes the requests waiting for the board to move
        server.shutdown()
        server.abort_active()
        server.server_close()  # joins the request threads (they are not daemons)
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - shutdown() returns only once serve_forever has
            log.warning("the HTTP server thread did not stop within %.0f s", timeout)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        return int(self._server.server_address[1])

    @property
    def ui_url(self) -> str | None:
        """Where the web UI is served: this server, its own (--ui-addr), or None."""
        if self.ui_server is not None:
            return self.ui_server.url
        return self.url if self.ui is not None else None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    """Tracks open connections: to refuse over the cap, to cut those past their deadline (from
    `service_actions`, which `serve_forever` calls every poll), and to cut all on stop."""

    daemon_threads = False  # so server_close() joins them
    block_on_close = True

    def __init__(self, address: tuple[str, int], app: HttpServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self._lock = threading.Lock()
        self._active: dict[socket.socket, float] = {}  # connection -> deadline (monotonic)
        self._refused = 0
        self._refusal_logged = -float("inf")
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can hang; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._active) >= self.app.max_connections:
                full = True
            else:
                full = False
                self._active[request] = time.monotonic() + self.app.request_deadline
        if full:
            self._refused += 1
            now = time.monotonic()
            if now - self._refusal_logged >= 10:  # a flood must not flood the log too
                log.warning("refused %d connection(s): %d open already", self._refused, self.app.max_connections)
                self._refused, self._refusal_logged = 0, now
            socketserver.TCPServer.shutdown_request(self, request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._active.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        now = time.monotonic()
        with self._lock:
            for conn, deadline in list(self._active.items()):
                if now > deadline:
                    log.info("cutting a connection open for over %.0f s", self.app.request_deadline)
                    _cut(conn)
                    self._active[conn] = float("inf")

    def abort_active(self) -> None:
        with self._lock:
            for conn in self._active:
                _cut(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, or we cut the connection
            log.debug("connection error: %s", error)
        else:
            log.exception("error while serving a request")


def _cut(conn: socket.socket) -> None:
    """Unblock the thread serving `conn` (its reads return EOF, its writes fail)."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server_version = "modelops-agent"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive holds a thread

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._app.request_timeout)  # each read and write of this request

    @property
    def _app(self) -> HttpServer:
        return cast(_Server, self.server).app

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        path = self.path.partition("?")[0].partition("#")[0]
        if self._app.ui_only:
            self._ui()
        elif path in _READ_ENDPOINTS:
            if self.command not in ("GET", "HEAD"):
                self._send(405, "method not allowed\n", headers=[("Allow", "GET, HEAD")])
            elif path == "/metrics":
                self._metrics()
            else:
                self._probe(path)
        elif path == "/webhook":
            self._webhook()
        elif path == "/alerts":
            self._alerts()
        elif self._app.ui is not None:
            self._ui()
        else:
            self._send(404, "not found\n")

    def _ui(self) -> None:
        app = self._app.ui
        assert app is not None
        try:
            answer = app.handle(Request.of(self.command, self.path, dict(self.headers.items())))
        except Exception:
            log.exception("the web UI failed on %s", self.command)
            self._send(500, "internal error\n")
            return
        self._send(answer.status, answer.body, content_type=answer.content_type, headers=answer.headers)
        if self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            self._drain()  # a body the UI never reads (it takes none): the answer first, no reset

    def _probe(self, path: str) -> None:
        """`ok` (200) or `unhealthy`/`not ready` (503) and nothing more: the endpoints are not
        authenticated. With `?verbose` (the Kubernetes convention) the check is listed,
        `[+]name ok` or `[-]name failed: reason`, the reason on one line with every URL's
        user info dropped (git's errors name the remote)."""
        healthz = path == "/healthz"
        check = self._app.health if healthz else self._app.ready
        try:
            ok, reason = check()
        except Exception as e:
            log.exception("the %s check failed", path)
            ok, reason = False, f"the check failed: {type(e).__name__}"
        query = urllib.parse.parse_qs(self.path.partition("?")[2], keep_blank_values=True)
        if "verbose" not in query:
            self._send(200 if ok else 503, "ok\n" if ok else f"{'unhealthy' if healthz else 'not ready'}\n")
            return
        name = "reconcile-loop" if healthz else "sync"
        line = f"[+]{name} ok" if ok else f"[-]{name} failed: {_shown_reason(reason)}"
        self._send(200 if ok else 503, f"{line}\n{path[1:]} check {'passed' if ok else 'failed'}\n")

    def _metrics(self) -> None:
        metrics = self._app.metrics
        if metrics is None:
            self._send(404, "metrics disabled\n")
            return
        self._send(200, metrics.exposition(), content_type=CONTENT_TYPE)

    def _webhook(self) -> None:
        app = self._app
        secret = app.webhook_secret
        if secret is None:
            self._send(404, "webhook disabled: no secret configured\n")
            return
        body = self._post_body(None)
        if body is None:
            return
        result = verify_and_parse(dict(self.headers.items()), body, secret, app.branch, max_body=app.max_body)
        log.info(
            "webhook from %s (%s): %d %s%s",
            result.provider or "unknown provider",
            self.address_string(),
            result.status,
            result.message,
            f" (commit {result.commit})" if result.commit else "",
        )
        if result.should_sync and app.on_push is not None:
            try:
                app.on_push(result.commit)
            except Exception:
                log.exception("the webhook's on_push callback failed")
                self._webhook_answer(result.provider, 500, "internal error\n")
                return
        self._webhook_answer(result.provider, result.status, result.message + "\n")

    def _post_body(self, provider: str | None) -> bytes | None:
        """The body of a POST with a sound Content-Length within the limit; None once the
        refusal is answered (or the client went away)."""
        app = self._app
        if self.command != "POST":
            self._webhook_answer(provider, 405, "only POST\n", headers=[("Allow", "POST")])
            return None
        if self.headers.get("Transfer-Encoding") is not None:
            self._webhook_answer(provider, 411, "Content-Length required (no Transfer-Encoding)\n")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._webhook_answer(provider, 411, "Content-Length required\n")
            return None
        if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0].strip()):
            self._webhook_answer(provider, 400, "bad Content-Length\n")
            return None
        length = int(lengths[0])
        if length > app.max_body:
            self._webhook_answer(provider, 413, f"body over {app.max_body} bytes\n")
            self._drain()
            return None
        body = self._read(length)
        if body is None:
            self.close_connection = True
        return body

    def _alerts(self) -> None:
        """Alertmanager's webhook: authenticated by the bearer secret before the body is read,
        then its firing alerts are handed to the controller (acted on in its next pass)."""
        app = self._app
        secret, provider = app.webhook_secret, "alertmanager"
        if secret is None or app.on_alerts is None:
            self._send(404, "alerts disabled: no secret configured\n")
            return
        if not bearer_ok(self.headers.get("Authorization"), secret):
            self._webhook_answer(provider, 401, "missing or wrong bearer token\n",
                                 headers=[("WWW-Authenticate", 'Bearer realm="modelops-agent"')])
            self._drain()  # the body, unread, must not reset the connection before the answer
            return
        body = self._post_body(provider)
        if body is None:
            return
        try:
            alerts = parse_alertmanager(body)
        except ValueError as exc:
            self._webhook_answer(provider, 400, f"{str(exc)[:200]}\n")
            return
        try:
            app.on_alerts(alerts)
        except Exception:
            log.exception("the on_alerts callback failed")
            self._webhook_answer(provider, 500, "internal error\n")
            return
        log.info("alerts from %s: %d firing", self.address_string(), len(alerts))
        self._webhook_answer(provider, 200, f"{len(alerts)} firing alert(s) accepted\n")

    def _webhook_answer(
        self, provider: str | None, status: int, text: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        if self._app.metrics is not None:
            self._app.metrics.webhook(provider, status)
        self._send(status, text, headers=headers)

    def _read(self, length: int) -> bytes | None:
        """Exactly `length` bytes of body, within `request_timeout` in all; None if the client
        closed early. Raises TimeoutError (handled by http.server: the connection is dropped)."""
        deadline = time.monotonic() + self._app.request_timeout
        chunks: list[bytes] = []
        remaining = length
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request body took too long")
            self.connection.settimeout(left)
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _drain(self) -> None:
        """After refusing a body unread: half-close, then discard a bounded amount of what the
        client is still sending, so its kernel does not get a reset before it reads our answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_DRAIN_SECONDS)
            deadline = time.monotonic() + _DRAIN_SECONDS
            drained = 0
            while drained < _DRAIN_BYTES and time.monotonic() < deadline:
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _send(
        self,
        status: int,
        body: str | bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        given = {name.lower() for name, _ in headers}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        for name, value in (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")):
            if name.lower() not in given:
                self.send_header(name, value)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
