"""What the tests of hostile peers share (unit and integration): the hostile values a registry
may answer, how an error must quote them, the token an echoing peer must never get back in any
encoding, and a fake MLflow that answers what a test sets (a hostile peer is the one place a
fake server is right: no real MLflow answers these)."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

RUN = "0123456789abcdef0123456789abcdef"
LONG_URI = "s3://b/" + "x" * 10_000  # 10,007 characters
HOSTILE_URIS = [
    "file:///etc/passwd",
    "/etc/passwd",
    LONG_URI,
    "s3://b/x\nkind: Secret",
    's3://b/x"; rm -rf / #',
    "$(id)",
    " ",
    "s3://b/$(MLFLOW_TRACKING_TOKEN)",
    "s3://b/x\u202eevil",  # a bidirectional override: not printable
]
HOSTILE_VERSIONS = ["7=8@a/b#c", "7\n", "7\nkind: Secret", "7" * 5000, "-1", "07", "7 "]


def shown(value: str) -> str:
    """How an error must quote a value: a JSON string of at most 80 characters (any other
    unprintable character escaped too), then how long it was."""
    text = json.dumps(value[:80])  # ensure_ascii: every non-ASCII character escaped
    return text + (f"… ({len(value)} characters)" if len(value) > 80 else "")


TOKEN = "s3cr3t/T0k+en=42?x&y"  # characters that percent-encoding and the two base64 alphabets change
USERS = ("x-access-token", "oauth2", "token", "alice", "")


def b64(data: str, urlsafe: bool = False) -> str:
    raw = data.encode()
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()


def encodings(secret: str = TOKEN) -> dict[str, str]:
    """What must never be shown: every form of the secret a header or an echo can hold."""
    forms = {"raw": secret, "quote": urllib.parse.quote(secret, safe=""),
             "quote_plus": urllib.parse.quote_plus(secret),
             "quote_lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(secret, safe=""))}
    for urlsafe in (False, True):
        for user in (None, *USERS):
            text = b64(secret if user is None else f"{user}:{secret}", urlsafe)
            forms[f"b64 {user} {urlsafe}"] = text
            forms[f"b64 {user} {urlsafe} unpadded"] = text.rstrip("=")
    return forms


def windows(secret: str = TOKEN, size: int = 10) -> set[str]:
    """Every `size`-character run of the secret's raw text and of its base64 at the three
    alignments (what any base64 text holding it contains), minus the edges mixed with other bytes."""
    out = {secret[i:i + size] for i in range(len(secret) - size + 1)}
    for urlsafe in (False, True):
        for pad in range(3):
            text = b64("\0" * pad + secret, urlsafe).rstrip("=")[3:-1]
            out |= {text[i:i + size] for i in range(len(text) - size + 1)}
    return out


def assert_no_secret(text: str) -> None:
    for name, form in encodings().items():
        assert form not in text, f"{name} ({form}) shown in: {text}"
    for run in windows():
        assert run not in text, f"part of the token ({run}) shown in: {text}"


def echo(headers: Any) -> str:
    """The hostile echo: each credential header raw, decoded and re-encoded, on one line."""
    parts = []
    for name in ("Authorization", "PRIVATE-TOKEN"):
        value = headers.get(name)
        if not value:
            continue
        scheme, _, credential = value.partition(" ")
        credential = credential or value
        secret = credential
        parts += [f"{name}: {value}", f"b64(header)={b64(value)}"]
        if scheme.lower() == "basic":
            decoded = base64.b64decode(credential).decode()
            secret = decoded.partition(":")[2]
            parts.append(f"decoded={decoded}")
        parts += [f"b64={b64(secret)}", f"b64url={b64(secret, True).rstrip('=')}",
                  f"b64(oauth2)={b64('oauth2:' + secret)}", f"b64(cut)={b64(secret)[:-4]}",
                  f"pct={urllib.parse.quote(secret, safe='')}", f"plus={urllib.parse.quote_plus(secret)}"]
    return "echo: " + (" | ".join(parts) or "no credentials")


@dataclass
class FakeMlflow:
    """What the fake answers: the version (for any alias or version asked), its source, where
    get-download-uri says it is, and the run's artifact location."""

    version: Any = "7"
    download_uri: str | None = "s3://models/fraud-scorer/7"
    source: str = "s3://models/fraud-scorer/7"
    run_id: str | None = None
    run_artifact_uri: str = ""
    echo_500: bool = False  # answer every call 500 with the request's credentials echoed
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        mv: dict[str, Any] = {"name": query.get("name", ""), "version": self.version, "source": self.source,
                              "status": "READY", "last_updated_timestamp": len(self.requests)}
        if self.run_id is not None:
            mv["run_id"] = self.run_id
        if path.endswith(("/model-versions/get", "/registered-models/alias")):
            return 200, {"model_version": mv}
        if path.endswith("/model-versions/get-download-uri"):
            return 200, {"artifact_uri": self.download_uri} if self.download_uri is not None else {}
        if path.endswith("/runs/get"):
            return 200, {"run": {"info": {"run_id": self.run_id, "status": "FINISHED",
                                          "artifact_uri": self.run_artifact_uri},
                                 "data": {"metrics": [{"key": "auc", "value": 0.97}]}}}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}


@contextmanager
def serve_mlflow(fake: FakeMlflow) -> Iterator[str]:
    """`fake` on 127.0.0.1 (its URL) until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if fake.echo_500:
                text = echo(self.headers)
                status, doc = 500, {"error_code": "INTERNAL_ERROR", "message": text}
            else:
                status, doc = fake.answer(parts.path, dict(parse_qsl(parts.query)))
            raw = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
