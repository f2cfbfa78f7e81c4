"""The web UI on the controller's HTTP server (a real socket): at / beside /metrics, or on its
own --ui-addr; the auth file (bearer or basic, 401 with a challenge, the secret in no answer or
log); a stop that does not wait for a page waiting for the board to move; and the auth file's
errors, naming file and field."""

from __future__ import annotations

import base64
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.controller import Metrics, RunConfig, serve, ui_app
from agent.errors import AgentError
from agent.ui import Board, UiApp, load_auth

TOKEN = "s3cr3t-t0ken-value"
PASSWORD = "hunter2-but-longer"


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers.items()), answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read().decode()


def server(board: Board, ui_addr: str | None = None, auth_file: Path | None = None, addr: str = "127.0.0.1:0"):  # type: ignore[no-untyped-def]
    config = RunConfig(repo="https://github.com/acme/models.git", http_addr=addr, ui_addr=ui_addr,
                       ui_auth_file=auth_file)
    return serve(config.http_addr, None, "main", health=lambda: (True, "ok"), ready=lambda: (True, "ok"),
                 metrics=Metrics(), on_push=lambda c: None, on_alerts=lambda a: None,
                 ui=ui_app(config, board), ui_addr=config.ui_addr)


def test_the_ui_is_served_beside_the_probes_and_metrics() -> None:
    http = server(Board())
    assert http is not None
    try:
        status, headers, body = fetch(http.url + "/")
        assert status == 200 and "Nothing published yet" in body and headers["Content-Security-Policy"].startswith(
            "default-src 'none'")
        assert fetch(http.url + "/healthz")[2] == "ok\n"
        assert fetch(http.url + "/metrics")[0] == 200
        assert fetch(http.url + "/static/app.js")[1]["Content-Type"].startswith("text/javascript")
        assert fetch(http.url + "/", method="POST")[0] == 405
        assert http.ui_url == http.url
    finally:
        http.stop()


def test_with_its_own_address_the_ui_leaves_the_main_server(tmp_path: Path) -> None:
    http = server(Board(), ui_addr="127.0.0.1:0")
    assert http is not None and http.ui_server is not None
    try:
        assert fetch(http.url + "/")[0] == 404
        assert fetch(http.ui_server.url + "/")[0] == 200
        assert fetch(http.ui_server.url + "/metrics")[0] == 404  # the UI's server is the UI alone
    finally:
        http.stop()
    assert http.ui_server._server is None  # stopped with the main one


def test_the_auth_file_guards_every_page_and_no_answer_or_log_holds_the_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    auth = tmp_path / "ui-auth.yaml"
    auth.write_text(f"token: {TOKEN}\nbasic:\n  username: ann\n  password: {PASSWORD}\n")
    caplog.set_level(logging.DEBUG)
    http = server(Board(), auth_file=auth)
    assert http is not None
    try:
        for path in ("/", "/audit", "/static/app.css", "/models/fraud/scorer"):
            status, headers, body = fetch(http.url + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="modelops-agent"')
            assert TOKEN not in body and PASSWORD not in body
        assert fetch(http.url + "/", {"Authorization": "Bearer wrong"})[0] == 401
        assert fetch(http.url + "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        good = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
        bad = base64.b64encode(b"ann:nope").decode()
        assert fetch(http.url + "/", {"Authorization": f"Basic {good}"})[0] == 200
        assert fetch(http.url + "/", {"Authorization": f"Basic {bad}"})[0] == 401
        assert fetch(http.url + "/", {"Authorization": "Basic !!notbase64"})[0] == 401
        assert fetch(http.url + "/healthz")[0] == 200  # the probes stay open
    finally:
        http.stop()
    assert TOKEN not in caplog.text and PASSWORD not in caplog.text
    assert TOKEN not in repr(load_auth(auth)) and PASSWORD not in repr(load_auth(auth))


@pytest.mark.parametrize(("content", "said"), [
    ("token: ''\n", "token must be a non-empty string"),
    ("basic: {username: ann}\n", "basic.password must be a non-empty string"),
    ("basic: {username: 'a:b', password: x}\n", "basic.username must not hold a colon"),
    ("tokens: x\n", "unknown field tokens"),
    ("basic: [1]\n", "basic must be a mapping"),
    ("[unclosed\n", "not YAML"),
    ("", "expected a mapping"),
])
def test_a_bad_auth_file_is_refused_naming_file_and_field(tmp_path: Path, content: str, said: str) -> None:
    path = tmp_path / "auth.yaml"
    path.write_text(content)
    with pytest.raises(AgentError) as caught:
        load_auth(path)
    assert str(path) in str(caught.value) and said in str(caught.value)
    with pytest.raises(AgentError, match="cannot read the UI auth file"):
        load_auth(tmp_path / "missing.yaml")


def test_stop_does_not_wait_for_a_page_waiting_for_the_board() -> None:
    board = Board()
    app = UiApp(board, poll_wait=30)
    config = RunConfig(repo="/srv/models", http_addr="127.0.0.1:0")
    http = serve(config.http_addr, None, "main", health=lambda: (True, "ok"), ready=lambda: (True, "ok"),
                 metrics=Metrics(), on_push=lambda c: None, on_alerts=lambda a: None, ui=app)
    assert http is not None
    answers: list[int] = []
    waiting = threading.Thread(target=lambda: answers.append(
        fetch(http.url + f"/?fragment=1&since={board.generation}")[0]))
    waiting.start()
    time.sleep(0.5)
    started = time.monotonic()
    http.stop()
    waiting.join(10)
    assert time.monotonic() - started < 3 and not waiting.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith(("agent-http", "agent-ui"))]
