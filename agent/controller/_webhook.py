"""Push webhooks from GitHub, GitLab and Gitea: verification and parsing, no I/O.

A webhook only tells the controller "sync now" (and which commit, as a hint); it never carries
what to apply, so the controller still fetches and validates the commit itself. The checks here
keep an unauthenticated caller from making the controller do even that: the body is
authenticated (HMAC-SHA256 or the GitLab token, compared in constant time) before it is parsed.

Providers are told apart by their event header. Gitea (and Forgejo) also send GitHub's headers
for compatibility, so Gitea's are looked at first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from agent.errors import AgentError

MAX_BODY_BYTES = 1 << 20
"""Largest webhook body accepted (1 MiB); GitHub caps its payloads at 25 MB, but a push event
to a model repo is a few KiB, and the controller needs none of it beyond the ref and commit."""

MAX_SECRET_FILE_BYTES = 64 * 1024

_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1 or SHA-256 object name
_MAX_ECHO = 200  # at most this much of a caller's text is echoed in a response message


@dataclass(frozen=True)
class WebhookResult:
    """What to answer and whether to sync. `commit` is the pushed commit when the payload named
    a well-formed one, else None (the controller then syncs the branch head)."""

    status: int
    message: str
    commit: str | None = None
    should_sync: bool = False
    provider: str | None = None


def read_webhook_secret(path: str | os.PathLike[str]) -> bytes:
    """The shared secret from `--webhook-secret-file`, read once at start. Trailing newlines are
    stripped (``echo secret > file`` adds one); an empty or unreadable file is an error rather
    than an open webhook. The error names the file, never its content."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        raise AgentError(f"cannot read the webhook secret file {os.fspath(path)}: {e.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise AgentError(f"the webhook secret file {os.fspath(path)} is over {MAX_SECRET_FILE_BYTES} bytes")
    secret = data.rstrip(b"\r\n")
    if not secret:
        raise AgentError(f"the webhook secret file {os.fspath(path)} is empty")
    return secret


def verify_and_parse(
    headers: Mapping[str, str],
    body: bytes,
    secret: bytes,
    branch: str,
    *,
    max_body: int = MAX_BODY_BYTES,
) -> WebhookResult:
    """Authenticate a webhook delivery and decide whether it asks for a sync of `branch`.

    401 bad or missing signature/token (checked before anything in the body is looked at);
    413 body over `max_body`; 400 no known provider header, or a push that is not a JSON object
    with a ref; 202 with `should_sync` False for a ping, another event, another ref or a branch
    deletion; 202 with `should_sync` True for a push to `branch`. `headers` are matched
    case-insensitively; header values are taken as latin-1 text, as `http.server` decodes them.
    """
    if not secret:
        raise ValueError("an empty webhook secret authenticates nothing")
    if len(body) > max_body:
        return WebhookResult(413, f"body over {max_body} bytes")
    h = {k.lower(): v for k, v in headers.items()}

    if "x-gitea-event" in h or "x-forgejo-event" in h:
        provider = "gitea"
        event = h.get("x-gitea-event", h.get("x-forgejo-event", ""))
        signature = h.get("x-gitea-signature", h.get("x-forgejo-signature"))
        if signature is None:
            return WebhookResult(401, "missing X-Gitea-Signature header", provider=provider)
        if not _hmac_ok(secret, body, signature):
            return WebhookResult(401, "invalid signature", provider=provider)
        is_push = event == "push"
    elif "x-gitlab-event" in h:
        provider = "gitlab"
        event = h["x-gitlab-event"]
        token = h.get("x-gitlab-token")
        if token is None:
            return WebhookResult(401, "missing X-Gitlab-Token header", provider=provider)
        if not hmac.compare_digest(_raw(token), secret):
            return WebhookResult(401, "invalid token", provider=provider)
        is_push = event == "Push Hook"
    elif "x-github-event" in h:
        provider = "github"
        event = h["x-github-event"]
        signature = h.get("x-hub-signature-256")
        if signature is None:
            return WebhookResult(401, "missing X-Hub-Signature-256 header", provider=provider)
        if not signature.startswith("sha256=") or not _hmac_ok(secret, body, signature[len("sha256=") :]):
            return WebhookResult(401, "invalid signature", provider=provider)
        is_push = event == "push"
    else:
        return WebhookResult(400, "no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header")

    if not is_push:
        return WebhookResult(202, f"ignored: {_echo(event)} event", provider=provider)

    payload = _payload(body, h.get("content-type", ""))
    if not isinstance(payload, dict):
        return WebhookResult(400, "the push event is not a JSON object", provider=provider)
    ref = payload.get("ref")
    if not isinstance(ref, str):
        return WebhookResult(400, "the push event has no ref", provider=provider)
    want = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    if ref != want:
        return WebhookResult(202, f"ignored: {_echo(ref)} is not {want}", provider=provider)
    if payload.get("deleted") is True or _is_zero(payload.get("after")):
        return WebhookResult(202, f"ignored: the push deletes {want}", provider=provider)
    commit = _commit(payload.get("checkout_sha")) or _commit(payload.get("after"))
    return WebhookResult(202, "sync requested", commit=commit, should_sync=True, provider=provider)


def _hmac_ok(secret: bytes, body: bytes, given_hex: str) -> bool:
    """Constant-time comparison of the body's HMAC-SHA256 with a hex digest from a header."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, _raw(given_hex.strip()).lower())


def _raw(value: str) -> bytes:
    """A header value back as the bytes that were sent (http.server decodes them as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _payload(body: bytes, content_type: str) -> Any:
    """The JSON payload, also from GitHub's form-encoded variant (``payload=<json>``); None
    when the body is not valid JSON (or is nested too deep to parse)."""
    try:
        if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("ascii"), max_num_fields=10, strict_parsing=True)
            values = form.get("payload", [])
            if len(values) != 1:
                return None
            return json.loads(values[0])
        return json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _commit(value: object) -> str | None:
    return value if isinstance(value, str) and _COMMIT.fullmatch(value) and not _is_zero(value) else None


def _is_zero(value: object) -> bool:
    """Git's all-zero object name, which a push event gives as `after` when a ref is deleted."""
    return isinstance(value, str) and len(value) >= 40 and value.strip("0") == ""


def _echo(text: str) -> str:
    """A caller's text made safe to echo back: printable ASCII only, and short."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text[:_MAX_ECHO])
    return safe + ("..." if len(text) > _MAX_ECHO else "")
