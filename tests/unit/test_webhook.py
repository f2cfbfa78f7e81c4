"""Push webhooks from GitHub, GitLab and Gitea: one table of deliveries, checked against
`verify_and_parse` and again through the real HTTP server (only a good push to the branch
calls on_push)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.controller._http import HttpServer
from agent.controller._metrics import Metrics
from agent.controller._webhook import MAX_BODY_BYTES, WebhookResult, read_webhook_secret, verify_and_parse
from agent.errors import AgentError

SECRET = b"s3cret-for-tests"
BRANCH = "main"
SHA = "0123456789abcdef0123456789abcdef01234567"
TIMEOUT = 5.0
PROVIDERS = ("github", "gitlab", "gitea")


def push_body(ref: str = "refs/heads/main", after: str = SHA, **extra: object) -> bytes:
    return json.dumps({"ref": ref, "before": "f" * 40, "after": after, **extra}).encode()


def hex_hmac(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed(provider: str, body: bytes, *, event: str | None = None, secret: bytes = SECRET) -> dict[str, str]:
    """The headers the provider sends with `body`, authenticated with `secret`."""
    if provider == "github":
        return {
            "X-GitHub-Event": event or "push",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-Hub-Signature-256": "sha256=" + hex_hmac(body, secret),
            "Content-Type": "application/json",
        }
    if provider == "gitlab":
        return {"X-Gitlab-Event": event or "Push Hook", "X-Gitlab-Token": secret.decode(), "Content-Type": "application/json"}
    assert provider == "gitea"
    return {"X-Gitea-Event": event or "push", "X-Gitea-Signature": hex_hmac(body, secret), "Content-Type": "application/json"}


AUTH_HEADER = {"github": "X-Hub-Signature-256", "gitlab": "X-Gitlab-Token", "gitea": "X-Gitea-Signature"}
NON_PUSH = {"github": "ping", "gitlab": "Merge Request Hook", "gitea": "pull_request"}
TAG_EVENT = {"github": "push", "gitlab": "Tag Push Hook", "gitea": "push"}


def tampered(value: str) -> str:
    """The same header value with its last character changed."""
    return value[:-1] + ("0" if value[-1] != "0" else "1")


@dataclass(frozen=True)
class Case:
    name: str
    provider: str
    headers: dict[str, str]
    body: bytes
    status: int
    sync: bool = False
    commit: str | None = None


def cases_for(provider: str) -> list[Case]:
    good = push_body()
    tag = push_body(ref="refs/tags/v1.0")
    big = push_body(padding="x" * MAX_BODY_BYTES)
    no_auth = signed(provider, good)
    del no_auth[AUTH_HEADER[provider]]
    bad = signed(provider, good)
    bad[AUTH_HEADER[provider]] = tampered(bad[AUTH_HEADER[provider]])
    other = push_body(ref="refs/heads/dev")
    return [
        Case("good", provider, signed(provider, good), good, 202, sync=True, commit=SHA),
        Case("bad-signature", provider, bad, good, 401),
        Case("missing-header", provider, no_auth, good, 401),
        Case("wrong-secret", provider, signed(provider, good, secret=b"another-secret"), good, 401),
        Case("other-branch", provider, signed(provider, other), other, 202),
        Case("tag-push", provider, signed(provider, tag, event=TAG_EVENT[provider]), tag, 202),
        Case("non-push-event", provider, signed(provider, b'{"zen": "hi"}', event=NON_PUSH[provider]), b'{"zen": "hi"}', 202),
        Case("non-json", provider, signed(provider, b"not json{"), b"not json{", 400),
        Case("json-array", provider, signed(provider, b"[1, 2]"), b"[1, 2]", 400),
        Case("no-ref", provider, signed(provider, b'{"after": "x"}'), b'{"after": "x"}', 400),
        Case("oversized", provider, signed(provider, big), big, 413),
    ]


CASES = [case for provider in PROVIDERS for case in cases_for(provider)]
IDS = [f"{c.provider}-{c.name}" for c in CASES]


# ---------------------------------------------------------------- verify_and_parse


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_verify_and_parse_table(case: Case) -> None:
    result = verify_and_parse(case.headers, case.body, SECRET, BRANCH)
    assert result.status == case.status, result
    assert result.should_sync is case.sync
    assert result.commit == case.commit
    if case.status != 413:
        assert result.provider == case.provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_signature_is_refused_before_the_body_is_parsed(provider: str) -> None:
    headers = signed(provider, b"not json{", secret=b"wrong")
    assert verify_and_parse(headers, b"not json{", SECRET, BRANCH).status == 401


@pytest.mark.parametrize("provider", PROVIDERS)
def test_headers_match_whatever_their_case(provider: str) -> None:
    body = push_body()
    headers = {k.lower(): v for k, v in signed(provider, body).items()}
    assert verify_and_parse(headers, body, SECRET, BRANCH).should_sync


def test_the_github_signature_needs_its_sha256_prefix() -> None:
    body = push_body()
    headers = signed("github", body)
    headers["X-Hub-Signature-256"] = hex_hmac(body)
    assert verify_and_parse(headers, body, SECRET, BRANCH).status == 401
    headers["X-Hub-Signature-256"] = "sha1=" + hex_hmac(body)
    assert verify_and_parse(headers, body, SECRET, BRANCH).status == 401


def test_a_non_ascii_token_or_signature_is_a_401_not_a_crash() -> None:
    body = push_body()
    for provider, header in AUTH_HEADER.items():
        headers = signed(provider, body)
        headers[header] = "sha256=\u00e9\u2603"
        assert verify_and_parse(headers, body, SECRET, BRANCH).status == 401


def test_gitea_is_told_apart_from_the_github_headers_it_also_sends() -> None:
    """Gitea sends X-GitHub-Event and X-Hub-Signature-256 too; its own headers decide."""
    body = push_body()
    headers = {**signed("gitea", body), "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"}
    result = verify_and_parse(headers, body, SECRET, BRANCH)
    assert (result.provider, result.should_sync) == ("gitea", True)


def test_forgejo_headers_count_as_gitea() -> None:
    body = push_body()
    headers = {"X-Forgejo-Event": "push", "X-Forgejo-Signature": hex_hmac(body)}
    assert verify_and_parse(headers, body, SECRET, BRANCH) == WebhookResult(
        202, "sync requested", commit=SHA, should_sync=True, provider="gitea"
    )


def test_no_provider_header_is_a_400() -> None:
    body = push_body()
    result = verify_and_parse({"X-Hub-Signature-256": "sha256=" + hex_hmac(body)}, body, SECRET, BRANCH)
    assert (result.status, result.should_sync, result.provider) == (400, False, None)


def test_gitlab_prefers_checkout_sha() -> None:
    other = "89abcdef" * 5
    body = push_body(checkout_sha=other)
    assert verify_and_parse(signed("gitlab", body), body, SECRET, BRANCH).commit == other


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_push_deleting_the_branch_syncs_nothing(provider: str) -> None:
    body = push_body(after="0" * 40, deleted=True, checkout_sha=None)
    result = verify_and_parse(signed(provider, body), body, SECRET, BRANCH)
    assert (result.status, result.should_sync) == (202, False)
    assert "deletes" in result.message


@pytest.mark.parametrize("after", ["not-a-sha", "ABCDEF" * 7, 42, None])
def test_a_malformed_commit_still_syncs_the_branch_head(after: object) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": after}).encode()
    result = verify_and_parse(signed("github", body), body, SECRET, BRANCH)
    assert (result.status, result.should_sync, result.commit) == (202, True, None)


def test_a_sha256_repository_commit_is_passed_on() -> None:
    sha256 = "ab" * 32
    body = push_body(after=sha256)
    assert verify_and_parse(signed("gitea", body), body, SECRET, BRANCH).commit == sha256


def test_the_branch_may_be_given_as_a_full_ref() -> None:
    body = push_body(ref="refs/heads/release/1.x")
    assert verify_and_parse(signed("github", body), body, SECRET, "refs/heads/release/1.x").should_sync
    assert verify_and_parse(signed("github", body), body, SECRET, "release/1.x").should_sync
    assert not verify_and_parse(signed("github", body), body, SECRET, "release").should_sync


def test_github_form_encoded_payload() -> None:
    body = urllib.parse.urlencode({"payload": push_body().decode()}).encode()
    headers = {**signed("github", body), "Content-Type": "application/x-www-form-urlencoded"}
    result = verify_and_parse(headers, body, SECRET, BRANCH)
    assert (result.should_sync, result.commit) == (True, SHA)


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    assert verify_and_parse(signed("github", body), body, SECRET, BRANCH).status == 400


def test_an_echoed_ref_is_printable_and_short() -> None:
    body = push_body(ref="refs/heads/\x1b[31mred\n" + "x" * 1000)
    result = verify_and_parse(signed("github", body), body, SECRET, BRANCH)
    assert result.status == 202 and not result.should_sync
    assert all(" " <= c <= "~" for c in result.message) and len(result.message) < 300


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        verify_and_parse(signed("github", b"{}"), b"{}", b"", BRANCH)


# ---------------------------------------------------------------- the secret file


@pytest.mark.parametrize(("content", "secret"), [(b"abc\n", b"abc"), (b"abc\r\n", b"abc"), (b"a b \n\n", b"a b "), (b"abc", b"abc")])
def test_the_secret_file_loses_its_trailing_newline(tmp_path: Path, content: bytes, secret: bytes) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    assert read_webhook_secret(path) == secret


@pytest.mark.parametrize("content", [b"", b"\n", b"x" * (65 * 1024)])
def test_an_empty_or_huge_secret_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    with pytest.raises(AgentError, match="secret file"):
        read_webhook_secret(path)


def test_a_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot read the webhook secret file"):
        read_webhook_secret(tmp_path / "nope")


# ---------------------------------------------------------------- through the HTTP server


class Pushes:
    """Records on_push calls."""

    def __init__(self) -> None:
        self.commits: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(self, commit: str | None) -> None:
        with self.lock:
            self.commits.append(commit)


@pytest.fixture(scope="module")
def _shared() -> Iterator[tuple[HttpServer, Pushes]]:
    """One server for the module (a stop waits for the server's poll interval)."""
    pushes = Pushes()
    srv = HttpServer(
        health=lambda: (True, ""),
        ready=lambda: (True, ""),
        metrics=Metrics(process=False),
        webhook_secret=SECRET,
        branch=BRANCH,
        on_push=pushes,
        request_timeout=1.0,
    )
    srv.start()
    try:
        yield srv, pushes
    finally:
        srv.stop()


@pytest.fixture
def pushes(_shared: tuple[HttpServer, Pushes]) -> Pushes:
    with _shared[1].lock:
        _shared[1].commits.clear()
    return _shared[1]


@pytest.fixture
def server(_shared: tuple[HttpServer, Pushes], pushes: Pushes) -> HttpServer:
    return _shared[0]


def post(url: str, body: bytes | None, headers: dict[str, str], method: str = "POST") -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "oversized"], ids=[i for c, i in zip(CASES, IDS, strict=True) if c.name != "oversized"])
def test_http_table(server: HttpServer, pushes: Pushes, case: Case) -> None:
    status, text = post(server.url + "/webhook", case.body, case.headers)
    assert status == case.status, text
    assert pushes.commits == ([case.commit] if case.sync else [])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_oversized_is_refused_before_the_body_is_read(server: HttpServer, pushes: Pushes, provider: str) -> None:
    """The declared length decides: the client has sent 2 bytes of a claimed 2 MiB."""
    headers = {**signed(provider, b"{}"), "Content-Length": str(2 * MAX_BODY_BYTES)}
    status, text = post(server.url + "/webhook", b"{}", headers)
    assert status == 413, text
    assert pushes.commits == []


def test_http_oversized_body_actually_sent_gets_its_413(pushes: Pushes) -> None:
    body = push_body(padding="x" * 100_000)
    with HttpServer(
        health=lambda: (True, ""), ready=lambda: (True, ""), webhook_secret=SECRET, on_push=pushes, max_body=10_000
    ) as srv:
        status, _ = post(srv.url + "/webhook", body, signed("github", body))
    assert status == 413
    assert pushes.commits == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_http_wrong_method(server: HttpServer, pushes: Pushes, method: str) -> None:
    body = push_body() if method != "GET" else None
    headers = signed("github", body or b"")
    request = urllib.request.Request(server.url + "/webhook", data=body, headers=headers, method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    with info.value as e:
        assert e.code == 405
        assert e.headers["Allow"] == "POST"
    assert pushes.commits == []


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_content_length_is_required(server: HttpServer, pushes: Pushes) -> None:
    body = push_body()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed("github", body).items())
    answer = raw_exchange(server.port, f"POST /webhook HTTP/1.0\r\n{head}\r\n".encode() + body)
    assert answer.startswith(b"HTTP/1.0 411 "), answer
    chunked = f"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode()
    answer = raw_exchange(server.port, chunked + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 411 "), answer
    assert pushes.commits == []


@pytest.mark.parametrize("length", ["-1", "1e3", "+5", "5_0", "abc"])
def test_http_bad_content_length(server: HttpServer, length: str) -> None:
    answer = raw_exchange(server.port, f"POST /webhook HTTP/1.0\r\nX-GitHub-Event: push\r\nContent-Length: {length}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.0 400 "), answer


def test_http_a_short_body_gets_no_sync(server: HttpServer, pushes: Pushes) -> None:
    """A client that claims 100 bytes, sends 10 and stalls is cut after the request timeout."""
    body = push_body()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed("github", body).items())
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.sendall(f"POST /webhook HTTP/1.0\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        assert conn.recv(65536) == b""  # closed without an answer
    assert time.monotonic() - started < 4
    assert pushes.commits == []


def test_http_webhook_without_a_secret_is_404() -> None:
    body = push_body()
    with HttpServer(health=lambda: (True, ""), ready=lambda: (True, "")) as srv:
        assert post(srv.url + "/webhook", body, signed("github", body))[0] == 404
        assert post(srv.url + "/webhook", None, {}, method="GET")[0] == 404


def test_a_secret_needs_a_callback_and_must_not_be_empty() -> None:
    with pytest.raises(ValueError):
        HttpServer(health=lambda: (True, ""), ready=lambda: (True, ""), webhook_secret=SECRET)
    with pytest.raises(ValueError):
        HttpServer(health=lambda: (True, ""), ready=lambda: (True, ""), webhook_secret=b"", on_push=lambda c: None)


def test_http_a_failing_callback_is_a_500() -> None:
    def boom(commit: str | None) -> None:
        raise RuntimeError("queue closed")

    body = push_body()
    with HttpServer(health=lambda: (True, ""), ready=lambda: (True, ""), webhook_secret=SECRET, on_push=boom) as srv:
        assert post(srv.url + "/webhook", body, signed("github", body))[0] == 500


def test_http_webhooks_are_counted(server: HttpServer) -> None:
    assert server.metrics is not None
    registry = server.metrics.registry
    name = "modelops_agent_webhook_requests_total"

    def count(code: str) -> float:
        return registry.get_sample_value(name, {"provider": "gitlab", "code": code}) or 0.0

    before = count("202"), count("401")
    body = push_body()
    post(server.url + "/webhook", body, signed("gitlab", body))
    post(server.url + "/webhook", body, signed("gitlab", body, secret=b"nope"))
    assert (count("202"), count("401")) == (before[0] + 1, before[1] + 1)


def test_http_logs_name_no_secret_or_signature(server: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.controller")
    body = push_body()
    for provider in PROVIDERS:
        post(server.url + "/webhook", body, signed(provider, body))
        post(server.url + "/webhook", body, signed(provider, body, secret=b"wrong-secret"))
    assert "sync requested" in caplog.text
    for secret in (SECRET, b"wrong-secret"):
        assert secret.decode() not in caplog.text
        assert hex_hmac(body, secret) not in caplog.text
