"""The one HTTP helper all three forges use: JSON in/out, auth, paging, errors in the forge's words.

The transport (no redirects, TLS with a private CA, timeouts, a body cap, GETs retried on
connection errors and 502/503/504, secrets scrubbed) is agent._http's, shared with the other
REST clients. Here: every failure becomes a `ForgeError` whose text names the forge, method,
API path, status and the API's own message, with the token scrubbed out of anything echoed back.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from agent._http import RETRY_DELAYS, Transport, TransportError
from agent.forge._errors import ForgeError

MAX_BODY = 16 * 1024 * 1024  # an answer bigger than this is not one of ours
MAX_PAGES = 500  # a server that never stops paging is a bug, not a big repo
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?')

Query = Mapping[str, str | int]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    data: Any  # parsed JSON, or None for an empty body


def api_message(data: bytes) -> str:
    """The API's own error text: GitHub/Gitea "message" (+ GitHub "errors"), GitLab "message"/"error"."""
    text = data.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        first = text.splitlines()[0] if text else ""
        return first[:200] or "(no message)"
    parts: list[str] = []
    for key in ("message", "error", "error_description"):
        if doc.get(key):
            parts.append(_flatten(doc[key]))
    errors = doc.get("errors")
    if isinstance(errors, list):
        details = [
            _flatten(e.get("message") or e.get("code") or e) if isinstance(e, dict) else _flatten(e) for e in errors
        ]
        if details:
            parts.append("(" + "; ".join(d for d in details if d) + ")")
    return (" ".join(parts) or json.dumps(doc)[:200])[:500]


def _flatten(value: Any) -> str:
    """GitLab's "message" may be a string, a list or {field: [problems]}: one line either way."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flatten(v) for v in value)
    return str(value)


class HttpClient:
    """JSON over HTTPS against one forge's API root, with that forge's auth header."""

    def __init__(
        self,
        kind: str,
        api_url: str,
        auth_header: tuple[str, str],
        secret: str,
        *,
        ca_file: str | Path | None = None,
        timeout: float = 20.0,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.api_url = api_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ForgeError(f"{kind}: API URL {self.api_url!r} is not an http(s) URL")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self.timeout = timeout
        headers = {**(extra_headers or {}), auth_header[0]: auth_header[1]}
        try:
            self._http = Transport(self.api_url, timeout=timeout, ca_file=ca_file, headers=headers,
                                   secrets=[secret], max_body=MAX_BODY)
        except TransportError as e:
            raise ForgeError(f"{kind}: {e}") from None

    @property
    def sleep(self) -> Callable[[float], None]:
        return self._http.sleep

    @sleep.setter
    def sleep(self, fn: Callable[[float], None]) -> None:  # tests replace it
        self._http.sleep = fn

    def __repr__(self) -> str:
        return f"HttpClient({self.kind!r}, {self.api_url!r})"

    # -- public ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, query: Query | None = None) -> Response:
        """One request to `path` (relative to the API root); raises ForgeError unless 2xx."""
        url = self.api_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        return self._send(method, url, path, body)

    def json(self, method: str, path: str, body: Any = None, query: Query | None = None) -> Any:
        return self.call(method, path, body, query).data

    def paged(self, path: str, query: Query | None = None) -> list[Any]:
        """Every item of a list endpoint, following `Link: rel="next"` or GitLab's `X-Next-Page`."""
        items: list[Any] = []
        url = (
            self.api_url + path + ("?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()}) if query else "")
        )
        shown = path
        for _ in range(MAX_PAGES):
            resp = self._send("GET", url, shown, None)
            if not isinstance(resp.data, list):
                raise self._error("GET", shown, f"unexpected answer: expected a list, got {type(resp.data).__name__}")
            items.extend(resp.data)
            if not resp.data:
                return items
            nxt = self._next_url(url, resp.headers)
            if nxt is None:
                return items
            url = nxt
            shown = urllib.parse.urlsplit(nxt).path.removeprefix(self._base_path) or "/"
        raise self._error("GET", path, f"more than {MAX_PAGES} pages; giving up")

    # -- internals ------------------------------------------------------------------------------
    def _next_url(self, url: str, headers: Message) -> str | None:
        link = str(headers.get("Link") or "")
        m = _LINK_NEXT.search(link)
        if m:
            nxt: str = urllib.parse.urljoin(url, str(m.group(1)))
            p = urllib.parse.urlsplit(nxt)
            if f"{p.scheme}://{p.netloc}" != self._origin or not p.path.startswith(self._base_path):
                # The token goes only to the configured API root, whatever a header says.
                raise self._error("GET", urllib.parse.urlsplit(url).path, f"next page outside the API root: {nxt}")
            return nxt
        page = str(headers.get("X-Next-Page") or "").strip()
        if page.isdigit():
            p = urllib.parse.urlsplit(url)
            q = dict(urllib.parse.parse_qsl(p.query))
            q["page"] = page
            following: str = urllib.parse.urlunsplit(p._replace(query=urllib.parse.urlencode(q)))
            return following
        return None

    def _error(self, method: str, path: str, what: str, status: int | None = None) -> ForgeError:
        prefix = f"{self.kind}: {method} {path}: "
        if status is not None:
            prefix += f"HTTP {status}: "
        return ForgeError(self._http.scrub(prefix + what), status=status)

    def _send(self, method: str, url: str, shown: str, body: Any) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = None if data is None else {"Content-Type": "application/json"}
        try:
            reply = self._http.send(method, url, body=data, headers=headers, retries=RETRY_DELAYS,
                                    retry_unreachable=True)
        except TransportError as e:
            raise self._failed(method, shown, e) from None
        if reply.status >= 300:
            raise self._error(method, shown, api_message(reply.body), reply.status)
        return Response(reply.status, reply.headers, self._parse(method, shown, reply.status, reply.body))

    def _failed(self, method: str, shown: str, e: TransportError) -> ForgeError:
        """The transport's failure in the forge's words: what to check, naming the origin."""
        origin = self._origin
        what = {
            "timeout": f"no answer from {origin} within {self.timeout:g}s (timeout)",
            "unreachable": f"cannot connect to {origin}: {e}",
            "connection": f"connection to {origin} failed: {e}",
            "certificate": f"TLS certificate verification failed for {origin} "
            f"({getattr(e.cause, 'verify_message', e)}); for a private CA pass its certificate as the CA file (--ca-file)",
            "tls": f"TLS error talking to {origin}: {e}",
            "redirect": f"redirected to {e.location}; use that URL as the API root",
        }.get(e.kind, str(e))
        return self._error(method, shown, what, e.status)

    def _parse(self, method: str, shown: str, status: int, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise self._error(method, shown, "answer is not JSON", status) from None
