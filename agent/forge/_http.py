"""The one HTTP helper all three forges use: JSON in/out, auth, TLS, timeouts, retries, paging.

Standard library only (urllib): the agent talks to three small REST surfaces, and a client
library per forge would add three dependencies for a dozen calls. What urllib lacks is added
here: redirects are refused (urllib would resend the auth header to whatever host a redirect
names), idempotent GETs are retried a bounded number of times on connection errors and
502/503/504, and every failure becomes a `ForgeError` whose text names the forge, method, API
path, status and the API's own message, with the token scrubbed out of anything echoed back.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from agent.forge._errors import ForgeError

USER_AGENT = "modelops-agent"
MAX_BODY = 16 * 1024 * 1024  # an answer bigger than this is not one of ours
MAX_PAGES = 500  # a server that never stops paging is a bug, not a big repo
RETRY_STATUSES = (502, 503, 504)
RETRY_DELAYS = (0.2, 0.6)  # two retries, short: a forge that is down for longer is down
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?')

Query = Mapping[str, str | int]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    data: Any  # parsed JSON, or None for an empty body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the token to the host it names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


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
        self._secret = secret
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(extra_headers or {})}
        self._headers[auth_header[0]] = auth_header[1]
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if ca_file is not None:
            try:
                ctx = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as e:
                raise ForgeError(f"{kind}: cannot use CA file {str(ca_file)!r}: {e}") from None
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)
        self.sleep = time.sleep  # tests may replace it

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

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _error(self, method: str, path: str, what: str, status: int | None = None) -> ForgeError:
        prefix = f"{self.kind}: {method} {path}: "
        if status is not None:
            prefix += f"HTTP {status}: "
        return ForgeError(self._scrub(prefix + what), status=status)

    def _send(self, method: str, url: str, shown: str, body: Any) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempts = 1 + len(RETRY_DELAYS) if method == "GET" else 1
        for attempt in range(attempts):
            retry = attempt + 1 < attempts
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read(MAX_BODY + 1)
                    return Response(resp.status, resp.headers, self._parse(method, shown, resp.status, raw))
            except urllib.error.HTTPError as e:
                try:
                    raw = e.read(64 * 1024)
                except (OSError, http.client.HTTPException):
                    raw = b""
                finally:
                    e.close()
                if e.code in RETRY_STATUSES and retry:
                    self.sleep(RETRY_DELAYS[attempt])
                    continue
                if 300 <= e.code < 400:
                    msg = f"redirected to {e.headers.get('Location', '?')}; use that URL as the API root"
                else:
                    msg = api_message(raw)
                raise self._error(method, shown, msg, e.code) from None
            except TimeoutError:
                raise self._timeout(method, shown) from None
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, TimeoutError):
                    raise self._timeout(method, shown) from None
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise self._error(
                        method,
                        shown,
                        f"TLS certificate verification failed for {self._origin} ({reason.verify_message}); "
                        "for a private CA pass its certificate as the CA file (--ca-file)",
                    ) from None
                if isinstance(reason, ssl.SSLError):
                    raise self._error(method, shown, f"TLS error talking to {self._origin}: {reason}") from None
                if retry:
                    self.sleep(RETRY_DELAYS[attempt])
                    continue
                raise self._error(method, shown, f"cannot connect to {self._origin}: {reason}") from None
            except (ConnectionError, http.client.HTTPException) as e:
                if retry:
                    self.sleep(RETRY_DELAYS[attempt])
                    continue
                raise self._error(method, shown, f"connection to {self._origin} failed: {e!r}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _timeout(self, method: str, path: str) -> ForgeError:
        return self._error(method, path, f"no answer from {self._origin} within {self.timeout:g}s (timeout)")

    def _parse(self, method: str, shown: str, status: int, raw: bytes) -> Any:
        if len(raw) > MAX_BODY:
            raise self._error(method, shown, f"answer larger than {MAX_BODY} bytes", status)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise self._error(method, shown, "answer is not JSON", status) from None
