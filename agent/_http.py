"""The one HTTP transport the agent's REST clients share (forges, Prometheus, MLflow).

Standard library only (urllib): each client calls a handful of endpoints, and a client library
per service would add dependencies for a dozen calls. What urllib lacks is added here, once:
redirects are refused (urllib would resend the credentials to whatever host a redirect names),
every request has a timeout and a body-size cap, idempotent GETs may be retried a bounded
number of times on 502/503/504, and every failure becomes a `TransportError` whose text has the
secrets scrubbed out. An HTTP error status is not a failure here: it is a `Reply` whose body the
client reads for the API's own message (scrubbed too: a server may echo the credentials). The
clients keep their API logic, error types and wording; they map a `TransportError` by its `kind`.

Scrubbing (`secret_forms`, `scrub`) covers every encoding a header can carry the secret in, and
is shared with the git edge (agent.source.run_git): raw, percent-encoded, base64 of the secret
and of `user:secret` (Basic auth), the secret's base64 at any alignment, and any cut of them of
8 or more characters.
"""

from __future__ import annotations

import base64
import functools
import http.client
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Literal

from agent.errors import plain_reason, plain_text

__all__ = ["RETRY_DELAYS", "Reply", "Secret", "Transport", "TransportError", "scrub", "secret_forms",
           "without_userinfo"]

USER_AGENT = "modelops-agent"
RETRY_STATUSES = (502, 503, 504)
RETRY_DELAYS = (0.2, 0.6)  # two retries, short: a service that is down for longer is down
ERROR_BODY = 64 * 1024  # an error's body is read for its message, not kept whole

Kind = Literal["config", "timeout", "unreachable", "connection", "certificate", "tls", "redirect", "too-large"]


class TransportError(Exception):
    """No usable answer. kind: config (bad URL or CA file), timeout, unreachable (could not
    connect), connection (broke mid-way), certificate (TLS verification), tls, redirect (refused;
    `location`), too-large (`status` and the cap). str() is a scrubbed, client-neutral text in
    words (`connection refused`, never `[Errno 111] ...`)."""

    def __init__(self, kind: Kind, text: str, *, status: int | None = None, location: str = "",
                 cause: BaseException | None = None) -> None:
        super().__init__(text)
        self.kind: Kind = kind
        self.status = status
        self.location = location
        self.cause = cause


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, success or error status alike: the client decides what it means."""

    status: int
    headers: Message
    body: bytes


Secret = str | tuple[str, str] | None
"""A secret to keep out of any text: the secret itself, or (user, secret) when it is also sent
as Basic auth `user:secret`; None (no secret configured) is skipped."""

_CORE_MIN = 6  # shorter base64 fragments of a secret are not masked on their own (too common)


def secret_forms(secrets: Iterable[Secret]) -> tuple[str, ...]:
    """Every form in which a secret can come back in a peer's answer, in git's stderr or in an
    exception: raw; percent-encoded (quote, quote_plus, lower-case escapes); base64 (standard and
    URL-safe, with and without padding) of the secret alone and of `user:secret`; and the part of
    the secret's base64 that any text holding it encodes to, at each of the three alignments (a
    header of another user name, a longer blob, a cut answer). Computed once, when the secret is
    known; longest first, so a longer form is masked whole before a shorter one inside it."""
    forms: set[str] = set()
    for entry in secrets:
        if not entry:
            continue
        user, secret = entry if isinstance(entry, tuple) else (None, entry)
        if not secret:
            continue
        quoted = urllib.parse.quote(secret, safe="")
        forms.update({secret, quoted, urllib.parse.quote_plus(secret),
                      re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted)})
        payloads = [secret.encode()] + ([f"{user}:{secret}".encode()] if user is not None else [])
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            for payload in payloads:
                text = encode(payload).decode()
                forms.update({text, text.rstrip("=")})
            for offset, skip in ((0, 0), (1, 2), (2, 3)):
                raw = b"\0" * offset + secret.encode()
                text = encode(raw).decode().rstrip("=")
                core = text[skip:len(text) - (0 if len(raw) % 3 == 0 else 1)]
                if len(core) >= _CORE_MIN:
                    forms.add(core)
    return tuple(sorted(forms, key=lambda f: (-len(f), f)))


_WINDOW = 8  # any run of this many characters of a form is masked: a cut echo too


def scrub(text: str, forms: Iterable[str]) -> str:
    """`text` with `forms` (secret_forms) masked: each form, and any run of 8 or more of its
    characters (an echo cut short, or cut out of a longer text), replaced by `***`."""
    forms = tuple(forms)
    for form in forms:
        if len(form) < _WINDOW and form in text:
            text = text.replace(form, "***")
    windows = _windows(forms)
    if not windows or len(text) < _WINDOW:
        return text
    masked = bytearray(len(text))
    for i in range(len(text) - _WINDOW + 1):
        if text[i:i + _WINDOW] in windows:
            masked[i:i + _WINDOW] = b"\1" * _WINDOW
    if not any(masked):
        return text
    out: list[str] = []
    for i, char in enumerate(text):
        if not masked[i]:
            out.append(char)
        elif i == 0 or not masked[i - 1]:
            out.append("***")
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _windows(forms: tuple[str, ...]) -> frozenset[str]:
    return frozenset(f[i:i + _WINDOW] for f in forms if len(f) >= _WINDOW for i in range(len(f) - _WINDOW + 1))


def _basic_user(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, so its encodings are masked too."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep and password else None


def without_userinfo(url: str) -> str:
    """url as it may be shown: any user:password@ dropped."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the credentials to the host it names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Transport:
    """Requests to one base URL (its userinfo dropped: credentials go in `headers`), with a
    private CA for https, a timeout, a body cap, and `secrets` scrubbed from every error."""

    def __init__(self, base_url: str, *, timeout: float, ca_file: str | Path | None = None,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[Secret] = (),
                 max_body: int = 16 * 1024 * 1024) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        self._secrets = secret_forms([*secrets, _basic_user(self._headers),
                                      *(v.partition(" ")[2] or v for k, v in self._headers.items()
                                        if k.lower() in ("authorization", "private-token"))])
        self.sleep: Callable[[float], None] = time.sleep  # tests may replace it
        parts = urllib.parse.urlsplit(base_url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise TransportError("config", f"not an http(s)://host[:port] URL: {without_userinfo(base_url)!r}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{port}" if port else "")
        # Shown in errors and used for requests: scheme, host, port and path; never userinfo.
        self.base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parts.scheme == "https":
            try:
                context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            except (OSError, ssl.SSLError) as e:
                raise TransportError("config", f"cannot use CA file {str(ca_file)!r}: {e}", cause=e) from None
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def scrub(self, text: str) -> str:
        """`text` without the secrets (or the credentials of the headers) in any encoding."""
        return scrub(text, self._secrets)

    def _scrub_bytes(self, raw: bytes) -> bytes:
        if not self._secrets:
            return raw
        text = raw.decode("utf-8", "surrogateescape")
        return self.scrub(text).encode("utf-8", "surrogateescape")

    def send(self, method: str, target: str, *, body: bytes | None = None,
             headers: Mapping[str, str] | None = None, retries: Sequence[float] = (),
             retry_unreachable: bool = False) -> Reply:
        """`target`: a path below the base URL, or an absolute URL (a next page). A GET is
        retried after each of `retries` seconds on 502/503/504 (the last answer is returned),
        and with retry_unreachable also when it could not connect or the connection broke.
        Other methods are sent once: a write is not known to be safe to repeat."""
        url = self.base + target if target.startswith("/") else target
        all_headers = {**self._headers, **(headers or {})}
        delays = tuple(retries) if method == "GET" else ()
        for attempt, delay in enumerate((*delays, None)):
            try:
                reply = self._once(urllib.request.Request(url, data=body, method=method, headers=all_headers))
            except TransportError as err:
                if delay is None or not (retry_unreachable and err.kind in ("unreachable", "connection")):
                    raise
            else:
                if delay is None or reply.status not in RETRY_STATUSES:
                    return reply
            self.sleep(delays[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, req: urllib.request.Request) -> Reply:
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read(self.max_body + 1)
                status = int(resp.status)
                if len(raw) > self.max_body:
                    raise TransportError("too-large", f"answer larger than {self.max_body} bytes", status=status)
                return Reply(status, resp.headers, raw)
        except urllib.error.HTTPError as err:
            with err:
                try:
                    raw = err.read(ERROR_BODY)
                except (OSError, http.client.HTTPException):
                    raw = b""
            if 300 <= err.code < 400:
                location = self.scrub(str(err.headers.get("Location", "?")))
                raise TransportError("redirect", f"HTTP {err.code} redirect to {location!r} refused",
                                     status=err.code, location=location) from None
            # An error's body is read for its message, which clients show (cut short): masked
            # whole here, before any cut could leave part of a secret unrecognised.
            return Reply(err.code, err.headers, self._scrub_bytes(raw))
        except OSError as err:  # URLError, TimeoutError, ConnectionError, ssl.SSLError
            raise self._failure(err) from None
        except http.client.HTTPException as err:
            text = plain_text(str(err)) if str(err) else "no valid HTTP answer"
            raise TransportError("connection", self.scrub(text), cause=err) from None

    def _failure(self, err: OSError) -> TransportError:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        kind: Kind
        if isinstance(reason, TimeoutError):
            return TransportError("timeout", f"no answer within {self.timeout:g}s", cause=reason)
        if isinstance(reason, ssl.SSLCertVerificationError):
            kind = "certificate"
        elif isinstance(reason, ssl.SSLError):
            kind = "tls"
        else:
            kind = "unreachable" if isinstance(err, urllib.error.URLError) else "connection"
        cause = reason if isinstance(reason, BaseException) else err
        return TransportError(kind, self.scrub(plain_reason(cause)), cause=cause)
