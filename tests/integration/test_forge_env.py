"""The local Git forge (a real Gitea, devenv.cluster.forge_up) and the agent as its client.

No mocks: git and the agent's Mirror talk HTTPS to Gitea, verified against the forge's own CA;
the token travels in git's environment (never in a URL or on a command line). Each test uses
its own repository, so the tests are independent of each other and of their order.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.errors import SourceError
from agent.source import Credentials, GitSource, Mirror
from devenv import cluster as dc
from devenv.cluster import ForgeInfo

pytestmark = pytest.mark.integration

_GIT_TIMEOUT = 60.0


def _git_env(info: ForgeInfo, home: Path, *, ca: bool = True, auth: bool = True) -> dict[str, str]:
    """A hermetic git environment: no user/system config, no prompt; the token as an
    Authorization header given through GIT_CONFIG_* variables (not argv, not the URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "HOME": str(home), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    })
    if ca:
        env["GIT_SSL_CAINFO"] = str(info.ca_file)
    if auth:
        basic = base64.b64encode(f"{info.admin_user}:{info.token}".encode()).decode()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


def _git(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=_GIT_TIMEOUT, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result


class _Work:
    """A local clone-to-be: commit files and push them to the forge over HTTPS."""

    def __init__(self, info: ForgeInfo, root: Path, url: str) -> None:
        self.dir = root / "work"
        self.dir.mkdir(parents=True)
        self.env = _git_env(info, root)
        self.url = url
        _git(["init", "-q", "-b", "main"], self.dir, self.env)
        _git(["remote", "add", "origin", url], self.dir, self.env)

    def commit_and_push(self, name: str, text: str) -> str:
        (self.dir / name).write_text(text)
        _git(["add", name], self.dir, self.env)
        _git(["commit", "-q", "-m", f"add {name}"], self.dir, self.env)
        _git(["push", "-q", "origin", "main"], self.dir, self.env)
        return _git(["rev-parse", "HEAD"], self.dir, self.env).stdout.strip()


def _api(info: ForgeInfo, path: str, *, method: str = "GET", body: object | None = None) -> Any:
    req = urllib.request.Request(
        info.api_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {info.token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return json.loads(resp.read())


def _commits_after_push(info: ForgeInfo, repo: str, timeout: float = 10.0) -> Any:
    """The branch's commits through the API. Gitea marks a repository non-empty in the queue
    that handles the push, a moment after `git push` returns: until then it answers 409."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _api(info, f"/repos/{info.admin_user}/{repo}/commits?sha=main&limit=5")
        except urllib.error.HTTPError as err:
            if err.code != 409 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_push_over_https_with_the_token_shows_in_the_api(gitea: ForgeInfo, tmp_path: Path) -> None:
    url = dc.forge_create_repo(gitea, "push-and-list")
    assert url == f"{gitea.url}{gitea.admin_user}/push-and-list.git"
    work = _Work(gitea, tmp_path, url)
    sha = work.commit_and_push("models.yaml", "models: []\n")

    commits = _commits_after_push(gitea, "push-and-list")
    assert [c["sha"] for c in commits] == [sha]
    clone = tmp_path / "clone"
    _git(["clone", "-q", url, str(clone)], tmp_path, work.env)
    assert (clone / "models.yaml").read_text() == "models: []\n"
    assert gitea.token not in url
    assert gitea.token_file.read_text().strip() == gitea.token
    assert gitea.token_file.stat().st_mode & 0o777 == 0o600


def test_without_the_ca_git_refuses_the_certificate(gitea: ForgeInfo, tmp_path: Path) -> None:
    url = dc.forge_create_repo(gitea, "needs-the-ca")
    env = _git_env(gitea, tmp_path, ca=False)
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    result = _git(["ls-remote", url], tmp_path, env, check=False)
    assert result.returncode != 0
    assert "certificate" in result.stderr.lower(), result.stderr
    with_ca = _git(["ls-remote", url], tmp_path, _git_env(gitea, tmp_path))
    assert with_ca.returncode == 0


def test_the_mirror_syncs_a_gitea_repo_over_https_with_the_ca(gitea: ForgeInfo, tmp_path: Path) -> None:
    url = dc.forge_create_repo(gitea, "mirrored")
    work = _Work(gitea, tmp_path, url)
    first = work.commit_and_push("a.yaml", "a: 1\n")
    creds = Credentials(token_file=gitea.token_file, username=gitea.admin_user, ca_file=gitea.ca_file)
    mirror = Mirror(url, "main", tmp_path / "cache", credentials=creds, timeout=30)

    assert mirror.sync() == first
    second = work.commit_and_push("b.yaml", "b: 2\n")
    assert mirror.head() == second
    assert mirror.sync() == second
    assert mirror.local_head() == second
    with GitSource(mirror.path) as source:  # what the controller reads: both files at the new commit
        snap = source.snapshot(second)
    assert snap.revision.commit == second
    assert snap.files == {"a.yaml": b"a: 1\n", "b.yaml": b"b: 2\n"}


def test_the_mirror_without_the_ca_fails_on_the_certificate(gitea: ForgeInfo, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = dc.forge_create_repo(gitea, "mirror-no-ca")
    _Work(gitea, tmp_path, url).commit_and_push("a.yaml", "a: 1\n")
    for name in ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    creds = Credentials(token_file=gitea.token_file, username=gitea.admin_user, ca_file=None)
    mirror = Mirror(url, "main", tmp_path / "cache", credentials=creds, timeout=30)
    with pytest.raises(SourceError, match="certificate") as err:
        mirror.sync()
    assert gitea.token not in str(err.value)

    missing = tmp_path / "no-such-ca.pem"
    creds = Credentials(token_file=gitea.token_file, username=gitea.admin_user, ca_file=missing)
    with pytest.raises(SourceError, match=str(missing)):
        Mirror(url, "main", tmp_path / "cache2", credentials=creds, timeout=30).sync()


def test_a_push_webhook_reaches_a_loopback_receiver_within_seconds(gitea: ForgeInfo, tmp_path: Path) -> None:
    received: list[tuple[float, dict[str, str], dict[str, Any]]] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((time.monotonic(), dict(self.headers), json.loads(body)))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = dc.forge_create_repo(gitea, "webhooked")
        _api(gitea, f"/repos/{gitea.admin_user}/webhooked/hooks", method="POST", body={
            "type": "gitea", "active": True, "events": ["push"],
            "config": {"url": f"http://127.0.0.1:{server.server_address[1]}/hook", "content_type": "json"},
        })
        work = _Work(gitea, tmp_path, url)
        pushed_at = time.monotonic()
        sha = work.commit_and_push("a.yaml", "a: 1\n")
        pushed = time.monotonic()
        assert arrived.wait(10), "no webhook within 10 s"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    at, headers, payload = received[0]
    assert headers.get("X-Gitea-Event") == "push"
    assert payload["after"] == sha
    print(f"webhook: {at - pushed:.2f}s after `git push` returned ({at - pushed_at:.2f}s after it began)")
    assert at - pushed < 3.0


@pytest.fixture
def own_forge(tmp_path: Path) -> Iterator[Path]:
    """A forge of this test's own (the session's stays up for the others); stopped at the end."""
    directory = tmp_path / "forge"
    try:
        yield directory
    finally:
        dc.forge_down(directory)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_up_reuses_a_running_forge_and_down_leaves_no_process(own_forge: Path) -> None:
    started = time.monotonic()
    info = dc.forge_up(own_forge)
    cold = time.monotonic() - started
    started = time.monotonic()
    again = dc.forge_up(own_forge)
    reuse = time.monotonic() - started
    print(f"forge_up: cold {cold:.2f}s, reuse {reuse:.3f}s")
    assert again == info

    dc.forge_down(own_forge)
    assert not _alive(info.pid)
    assert not Path(f"/proc/{info.pid}").exists() or not _alive(info.pid)
    dc.forge_down(own_forge)  # idempotent

    restarted = dc.forge_up(own_forge)  # the same forge on its data: same CA and token
    assert restarted.pid != info.pid
    assert (restarted.token, restarted.ca_file, restarted.admin_password) == (
        info.token, info.ca_file, info.admin_password)
    assert _api(restarted, "/user")["login"] == info.admin_user
    dc.forge_down(own_forge)
    assert not _alive(restarted.pid)
