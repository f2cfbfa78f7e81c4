"""Forge.set_status on GitHub, GitLab and Gitea against a scripted server on 127.0.0.1: the
request each forge documents (path, fields, auth), the answer checked, GitLab's "failed" and
its refusal to set a state twice, and the checks before any request (full sha, state, context,
one-line description of at most 140 characters, an http(s) link). The real Gitea is exercised
by tests/integration/test_notify_forge.py."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.forge import ForgeError, RepoRef, open_forge
from agent.notify import Event, StatusChannel, TargetConfig

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "st4tus-t0ken-secret"
PREFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}


class StatusServer:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.asked: list[tuple[str, dict[str, str], Any]] = []
        self.answer: tuple[int, Any] | None = None  # None: echo the status as the forge does
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                server.asked.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, doc = server.answer or (201, server.echo(body))
                raw = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                server.asked.append((self.path, {k.lower(): v for k, v in self.headers.items()}, None))
                raw = json.dumps(server.current(re.findall(r"[0-9a-f]{40}", self.path)[0])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.api_url = f"http://127.0.0.1:{self.http.server_address[1]}{PREFIX[kind]}"

    def echo(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "gitlab":
            return {"id": 1, "sha": SHA, "status": body["state"], "name": body["name"],
                    "description": body.get("description"), "target_url": body.get("target_url")}
        key = "status" if self.kind == "gitea" else "state"  # Gitea answers with `status`
        return {"id": 1, key: body["state"], "context": body["context"], "description": body.get("description"),
                "target_url": body.get("target_url", "")}

    def current(self, sha: str) -> Any:
        """The statuses set so far as the forge lists them (GitLab: every one, with ids; GitHub
        and Gitea: the combined status, the newest per context)."""
        posted = [(i, self.echo(body)) for i, (path, _h, body) in enumerate(self.asked)
                  if body is not None and sha in path]
        if self.kind == "gitlab":
            return [{**doc, "id": i + 1} for i, doc in posted]
        newest: dict[str, Any] = {}
        for _i, doc in posted:
            newest[doc["context"]] = doc
        return {"state": "pending", "statuses": list(reversed(newest.values()))}

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(params=["github", "gitlab", "gitea"])
def server(request: pytest.FixtureRequest) -> Iterator[StatusServer]:
    s = StatusServer(request.param)
    yield s
    s.stop()


def forge_of(s: StatusServer) -> Any:
    return open_forge(RepoRef(s.kind, s.api_url, "acme", "models"), TOKEN, timeout=5.0)


def test_each_forge_gets_its_documented_request(server: StatusServer) -> None:
    forge = forge_of(server)
    got = forge.set_status(SHA, "failure", "modelops/models-prod", "rolled back:\n  error rate 0.5 > 0.05 " + "x" * 200,
                           "https://agent.example/models/ns/m?target=models-prod")
    assert got.state == "failure" and got.context == "modelops/models-prod"
    path, headers, body = server.asked[0]
    description = body["description"]
    assert len(description) == 140 and "\n" not in description and description.startswith("rolled back: error rate")
    if server.kind == "gitlab":
        assert path == f"/api/v4/projects/acme%2Fmodels/statuses/{SHA}"
        assert body["state"] == "failed" and body["name"] == "modelops/models-prod"
        assert headers["private-token"] == TOKEN
    else:
        assert path == f"{PREFIX[server.kind]}/repos/acme/models/statuses/{SHA}"
        assert body["state"] == "failure" and body["context"] == "modelops/models-prod"
        assert body["target_url"] == "https://agent.example/models/ns/m?target=models-prod"
    pending = forge.set_status(SHA, "pending", "modelops/models-prod", "applying")
    assert pending.state == "pending" and "target_url" not in server.asked[1][2]


def test_an_answer_that_is_not_the_status_sent_is_an_error(server: StatusServer) -> None:
    server.answer = (201, {"id": 1, "state": "success", "status": "success", "context": "other", "name": "other"})
    with pytest.raises(ForgeError, match="the answer is not the status sent"):
        forge_of(server).set_status(SHA, "success", "modelops/t", "ok")
    server.answer = (201, ["not", "an", "object"])
    with pytest.raises(ForgeError, match="expected an object"):
        forge_of(server).set_status(SHA, "success", "modelops/t", "ok")


def test_refusals_are_forge_errors_with_their_status_and_no_token(server: StatusServer) -> None:
    server.answer = (422, {"message": f"bad token {TOKEN}"})
    with pytest.raises(ForgeError) as raised:
        forge_of(server).set_status(SHA, "success", "modelops/t", "ok")
    assert raised.value.status == 422 and TOKEN not in str(raised.value)


def test_gitlab_setting_the_same_state_again_counts_as_done() -> None:
    s = StatusServer("gitlab")
    try:
        s.answer = (400, {"message": "Cannot transition status via :run from :running"})
        got = forge_of(s).set_status(SHA, "pending", "modelops/t", "applying")
        assert got.state == "pending"
    finally:
        s.stop()


@pytest.mark.parametrize(("sha", "state", "context", "url", "message"), [
    ("abc123", "success", "modelops/t", "", "is not a full commit id"),
    (SHA, "error", "modelops/t", "", "state 'error' is not one of pending, success, failure"),
    (SHA, "success", "modelops t", "", "context"),
    (SHA, "success", "modelops/t", "javascript:alert(1)", "the link is not an http(s) URL"),
])
def test_checked_before_any_request(server: StatusServer, sha: str, state: str, context: str, url: str,
                                    message: str) -> None:
    with pytest.raises(ForgeError, match=re.escape(message)):
        forge_of(server).set_status(sha, state, context, "d", url)
    assert server.asked == []


def test_get_status_reads_the_newest_of_a_context(server: StatusServer) -> None:
    forge = forge_of(server)
    assert forge.get_status(SHA, "modelops/t") is None
    forge.set_status(SHA, "pending", "modelops/t", "applying")
    forge.set_status(SHA, "success", "modelops/other", "applied elsewhere")
    forge.set_status(SHA, "failure", "modelops/t", "m 2: rollout rolled back: error rate", "https://ui/")
    got = forge.get_status(SHA, "modelops/t")
    assert got is not None and (got.state, got.description, got.url) == (
        "failure", "m 2: rollout rolled back: error rate", "https://ui/")
    path = server.asked[-1][0]
    if server.kind == "gitlab":
        assert path.startswith(f"/api/v4/projects/acme%2Fmodels/repository/commits/{SHA}/statuses?name=modelops%2Ft")
    else:
        assert path == f"{PREFIX[server.kind]}/repos/acme/models/commits/{SHA}/status"


def test_each_event_sets_its_state_per_context(server: StatusServer) -> None:
    """pending, success, then failure when the commit's rollout rolls back; a fleet member's
    events set a context of their own."""
    channel = StatusChannel(TargetConfig("c", "commitStatus", token=TOKEN), None, forge_of(server))

    def states(sha: str = SHA) -> list[str]:
        return [body["state"] for path, _h, body in server.asked if body is not None and sha in path]

    for kind, message in (("commit-pending", "applying"), ("commit-applied", "applied"),
                          ("rollout-rolled-back", "ns/m 2: rollout rolled back: error rate 0.5 > 0.05")):
        channel.deliver(Event(kind, "t", commit=SHA, message=message))
    failed = "failed" if server.kind == "gitlab" else "failure"
    assert states() == ["pending", "success", failed]
    channel.deliver(Event("commit-pending", "t", commit=SHA, message="applying", cluster="eu-1"))
    assert [body["context" if server.kind != "gitlab" else "name"] for _p, _h, body in server.asked
            if body is not None][-1] == "modelops/t/eu-1"
