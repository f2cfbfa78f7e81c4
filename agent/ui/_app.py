"""The web UI's application: a request in, a response out (the controller's HTTP server does
the sockets). Read-only: GET and HEAD only, no form, no button that changes anything.

Pages are Jinja2 templates (autoescape on: every string from Git, a registry, Prometheus or the
cluster is escaped) under agent/ui/templates, with app.css and app.js under agent/ui/static;
complete without JavaScript. app.js keeps a page current: it asks `?fragment=1&since=G` (G the
board generation the page shows); the app answers the page's <main> as soon as the board moves
past G, or 204 after `poll_wait` seconds when it has not. Every answer carries the CSP below
and no-store (static files may be cached a short while)."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from agent.ui._auth import Auth
from agent.ui._board import Board
from agent.ui._chart import ChartSource
from agent.ui._links import ForgeLinks
from agent.ui._records import AuditReader
from agent.ui._views import audit_page, model_page, overview

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"))
HTML = "text/html; charset=utf-8"
_STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "favicon.svg": "image/svg+xml"}
_MODEL_PATH = re.compile(r"/models/([a-z0-9][a-z0-9-]{0,62})/([^/]{1,253})")


@dataclass(frozen=True)
class Request:
    """method, path (no query), query (each name's values) and headers (names lower case)."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, method: str, target: str, headers: Mapping[str, str] | None = None) -> Request:
        """From a request line's target (`/models/a/b?target=x`) and its headers."""
        path, _, query = target.partition("#")[0].partition("?")
        try:
            args = urllib.parse.parse_qs(query, keep_blank_values=True, max_num_fields=20)
        except ValueError:  # more fields than any page takes: none of them is read
            args = {}
        return cls(method.upper(), urllib.parse.unquote(path) or "/", args,
                   {k.lower(): v for k, v in (headers or {}).items()})

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("agent.ui", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


class UiApp:
    """The UI over `board`. `auth`: credentials every request must carry (None: open);
    `forge`: links to the repository's commits and pull requests. `close()` ends its threads
    and wakes the requests waiting for a change."""

    def __init__(self, board: Board, *, auth: Auth | None = None, forge: ForgeLinks | None = None,
                 poll_wait: float = 20.0, charts: ChartSource | None = None) -> None:
        self.board = board
        self.auth = auth
        self.forge = forge
        self.poll_wait = poll_wait
        self.charts = charts or ChartSource()
        self.audit = AuditReader()
        self._env = _environment()
        self._closed = threading.Event()
        self._static: dict[str, bytes] = {}

    def close(self) -> None:
        self._closed.set()
        self.charts.close()

    def handle(self, request: Request) -> Response:
        if self.auth is not None and not self.auth.allows(request.headers.get("authorization")):
            return self._text(401, "authentication required\n", (("WWW-Authenticate", self.auth.challenge()),))
        if request.method not in ("GET", "HEAD"):
            return self._text(405, "the UI is read-only: only GET and HEAD\n", (("Allow", "GET, HEAD"),))
        path = request.path
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        if path == "/favicon.ico":  # asked for by browsers whatever the page's <link rel=icon> says
            return self._file("favicon.svg")
        try:
            page = int(request.arg("page") or "1")
        except ValueError:
            page = 1
        if path in ("/", "/index.html"):
            return self._page(request, "overview.html", lambda: self._overview())
        if path == "/audit":
            return self._page(request, "audit.html", lambda: audit_page(
                self.board, self.audit, page, event=request.arg("event"), model=request.arg("model")))
        m = _MODEL_PATH.fullmatch(path)
        if m is not None:
            key = f"{m.group(1)}/{m.group(2)}"
            return self._page(request, "model.html", lambda: self._model(key, request.arg("target"),
                                                                             request.arg("cluster")))
        return self._page(request, "missing.html", lambda: {"what": "page"}, status=404)

    # --- pages --------------------------------------------------------------------------------

    def _overview(self) -> dict[str, Any]:
        heads, rows = overview(self.board, time.time())
        counts: dict[tuple[str, str, str], int] = {}
        for r in rows:
            counts[r.health] = counts.get(r.health, 0) + 1
        summary = {"models": len(rows), "health": sorted(counts.items(), key=lambda kv: kv[0][1]),
                   "rolling": sum(1 for r in rows if r.phase == "Progressing"),
                   "outofsync": sum(1 for r in rows if not r.synced), "drifted": sum(1 for r in rows if r.drift)}
        return {"heads": heads, "rows": rows, "summary": summary}

    def _model(self, key: str, target: str | None, cluster: str | None) -> dict[str, Any] | None:
        return model_page(self.board, self.charts, self.audit, self.forge, key, target, cluster, time.time())

    def _page(self, request: Request, name: str, build: Callable[[], dict[str, Any] | None],
              status: int = 200) -> Response:
        fragment = request.arg("fragment") == "1"
        generation = self.board.generation
        since = request.arg("since")
        if fragment and since is not None and since.isdigit() and int(since) == generation:
            generation = self._wait(generation)
            if generation == int(since):
                return Response(204, headers=(*SECURITY_HEADERS, ("Cache-Control", "no-store")))
        values = build()
        if values is None:  # a model no entry has (any more)
            name, status, values = "missing.html", 404, {"what": "model"}
        values = {**values, "generation": generation, "page_name": name.removesuffix(".html")}
        template = self._env.get_template(name)
        if fragment:
            context = template.new_context(values)
            body = "".join(template.blocks["main"](context))
        else:
            body = template.render(values)
        return Response(status, body.encode("utf-8"), HTML,
                        (*SECURITY_HEADERS, ("Cache-Control", "no-store"), ("X-Board-Generation", str(generation))))

    def _wait(self, generation: int) -> int:
        """The board generation once it moves past `generation`, or after poll_wait (or close)."""
        deadline = time.monotonic() + self.poll_wait
        current = generation
        while current == generation and not self._closed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            current = self.board.wait(generation, min(left, 0.5))
        return current

    def _file(self, name: str) -> Response:
        kind = _STATIC.get(name)
        if kind is None:
            return self._text(404, "not found\n")
        data = self._static.get(name)
        if data is None:
            data = resources.files("agent.ui").joinpath("static", name).read_bytes()
            self._static[name] = data
        return Response(200, data, kind, (*SECURITY_HEADERS, ("Cache-Control", "max-age=60")))

    @staticmethod
    def _text(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return Response(status, text.encode("utf-8"), "text/plain; charset=utf-8",
                        (*SECURITY_HEADERS, ("Cache-Control", "no-store"), *headers))
