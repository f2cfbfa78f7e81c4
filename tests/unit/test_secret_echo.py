"""Secrets never come back in any encoding: a peer that echoes the request's credentials.

One echo server plays every peer: for the REST clients (forge, MLflow, Prometheus) it answers
500 with the request's credential headers in the body, raw and in the encodings a header can
carry (base64 of the header, of `user:token` for several user names, of the token alone, with
and without padding; percent-encoded); for git it is a smart-HTTP server that asks for Basic
auth and then answers `ERR <the same text>`, which the real `git` prints as `remote error:`.
Each client's error (the CLI's output where there is a command for it) must show the echo (a
positive sign it got there) and none of the token's encodings.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent._http import scrub, secret_forms
from agent.cli import main
from agent.errors import AgentError
from agent.metrics_source import MetricsError, Prometheus
from agent.source import Credentials, Mirror
from tests._hostile import TOKEN, assert_no_secret, b64, echo, encodings
from tests.unit._tls import make_pki, server_context
from tests.unit.conftest import disk_repo, mlflow_repo, t


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


class Echo:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests = 0
        echo_server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                echo_server.requests += 1
                if self.path.startswith("/git/"):
                    self._git()
                    return
                text = echo(self.headers)
                body = json.dumps({"error_code": "INTERNAL_ERROR", "message": text, "status": "error",
                                   "errorType": "internal", "error": text}).encode()
                self._answer(500, "application/json", body)

            do_POST = do_PUT = do_PATCH = do_GET

            def _git(self) -> None:
                if "Authorization" not in self.headers:  # git sends credentials only when asked
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="echo"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                service = "git-receive-pack" if "receive-pack" in self.path else "git-upload-pack"
                body = (pkt(f"# service={service}\n".encode()) + b"0000"
                        + pkt(b"ERR " + echo(self.headers).encode() + b"\n"))
                self._answer(200, f"application/x-{service}-advertisement", body)

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Echo]:
    s = Echo()
    s.thread.start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https_server(pki: Path) -> Iterator[Echo]:
    """The echo over https (a token is only sent over https), trusted through pki/ca.pem."""
    s = Echo(server_context(pki))
    s.thread.start()
    try:
        yield s
    finally:
        s.close()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


# --- the scrub set -------------------------------------------------------------------------------


def test_every_encoding_of_the_token_is_masked() -> None:
    forms = secret_forms([("x-access-token", TOKEN)])
    for name, form in encodings().items():
        masked = scrub(f"before {form} after", forms)
        assert masked.startswith("before ") and masked.endswith(" after"), name
        assert_no_secret(masked)
    assert scrub("nothing secret here", forms) == "nothing secret here"
    # a base64 blob that merely contains the token, at any offset: its token part is masked
    for prefix in ("", "a", "ab", "abc"):
        assert_no_secret(scrub(b64(f"{prefix}{TOKEN}suffix"), forms))


def test_short_fragments_are_not_masked_alone() -> None:
    """A secret's base64 fragments shorter than 6 characters would mask ordinary words."""
    assert scrub("the key abc is fine", secret_forms(["abc"])) == "the key *** is fine"
    assert all(len(f) >= 3 for f in secret_forms(["abc"]))


# --- a test per client ---------------------------------------------------------------------------


def test_mlflow_basic_auth_echoed_in_a_500(server: Echo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`agent render` of a repo with an MLflow reference; MLflow's own username/password."""
    repo = mlflow_repo(tmp_path / "repo", server.url)
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TOKEN)
    code, text = run_cli(["render", str(repo)], capsys)
    assert code == 2 and "echo: Authorization: Basic ***" in text, text
    assert_no_secret(text)


def test_mlflow_bearer_token_echoed_in_a_500(server: Echo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = mlflow_repo(tmp_path / "repo", server.url, settings=", tokenEnv: ECHO_MLFLOW_TOKEN")
    monkeypatch.setenv("ECHO_MLFLOW_TOKEN", TOKEN)
    code, text = run_cli(["render", str(repo)], capsys)
    assert code == 2 and "echo: Authorization: Bearer ***" in text, text
    assert_no_secret(text)


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_forge_token_echoed_in_a_500(server: Echo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """`agent pr-comment` against each forge's API: its own auth header echoed back."""
    body = tmp_path / "plan.md"
    body.write_text("the plan\n")
    monkeypatch.setenv("ECHO_FORGE_TOKEN", TOKEN)
    prefix = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}[kind]
    code, text = run_cli(["pr-comment", "1", "--repo", "acme/models", "--forge", kind, "--api-url",
                          server.url + prefix, "--token-env", "ECHO_FORGE_TOKEN", "--body-file", str(body)], capsys)
    assert code == 2 and "echo: " in text and "***" in text, text
    assert_no_secret(text)


def test_prometheus_token_echoed_in_a_500(server: Echo) -> None:
    with pytest.raises(MetricsError) as err:
        Prometheus(server.url, token=TOKEN, timeout=5).query("up")
    assert "echo: Authorization: Bearer ***" in str(err.value), err.value
    assert_no_secret(str(err.value))


def test_git_fetch_with_a_token_echoed_by_the_remote(https_server: Echo, pki: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The controller's mirror: the real git answers git's Basic auth challenge with the token
    (askpass), the remote echoes the header in an ERR line, git prints it on stderr."""
    monkeypatch.setenv("ECHO_GIT_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    mirror = Mirror(f"{https_server.url}/git/models.git", "main", tmp_path / "mirrors",
                    credentials=Credentials(token_env="ECHO_GIT_TOKEN", ca_file=pki / "ca.pem"), timeout=20)
    with mirror, pytest.raises(AgentError) as err:
        mirror.head()
    text = str(err.value)
    assert "remote error: echo: Authorization: Basic ***" in text, text
    assert_no_secret(text)
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_promote_push_with_a_token_echoed_by_the_remote(server: Echo, tmp_path: Path, forge: str,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`agent promote --push URL --token-env`: the finding was the token base64-encoded in its
    output (`Basic eC1hY2Nlc3MtdG9rZW46…`); GitLab's user name is oauth2."""
    repo = _git_repo(tmp_path / "repo")
    monkeypatch.setenv("ECHO_GIT_TOKEN", TOKEN)
    code, text = run_cli(["promote", "scorer", str(repo), "--canary", "2", "--traffic", "10", "--commit",
                          "--push", f"{server.url}/git/models.git", "--token-env", "ECHO_GIT_TOKEN",
                          "--forge", forge], capsys)
    assert code == 2 and "remote error: echo: Authorization: Basic ***" in text, text
    assert_no_secret(text)


# --- repos ---------------------------------------------------------------------------------------


def _git_repo(root: Path) -> Path:
    disk_repo(root, t("""
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: scorer
          namespace: fraud
        spec:
          format: sklearn
          runtime: sklearn-server
          versions:
            - version: "1"
              uri: s3://models/scorer/1/
            - version: "2"
              uri: s3://models/scorer/2/
          stable: "1"
        """))
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", "-C", str(root), *args], env=env, check=True, capture_output=True)
    return root
