"""agent.forge against in-memory fakes of GitHub, GitLab and Gitea on 127.0.0.1.

These are contract tests of the request shapes (paths, query parameters, JSON fields, auth
headers, pagination) and of the idempotency rules, not of the forges themselves: the fakes in
tests/unit/_forge_servers.py implement only what the agent calls. The real Gitea is exercised
by the integration tests (tools/gitea). Also here: remote URL parsing, token reading, timeouts,
retries and TLS with a private CA (a throwaway CA made with the openssl CLI).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.errors import AgentError
from agent.forge import Forge, ForgeError, PullRequest, RepoRef, open_forge, read_token, repo_ref
from tests.unit._forge_servers import TOKEN, FakeForge
from tests.unit._tls import make_pki

KINDS = ["github", "gitlab", "gitea"]


@pytest.fixture(params=KINDS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeForge]:
    f = FakeForge(request.param)
    yield f
    f.stop()


def connect(f: FakeForge, token: str = TOKEN, **kw: Any) -> Forge:
    forge = open_forge(RepoRef(f.kind, f.api_url, f.owner, f.name), token, **kw)
    forge.http.sleep = lambda _s: None  # type: ignore[attr-defined]  # no real back-off in tests
    return forge


# --- pull requests ---------------------------------------------------------------------------


def test_open_pull_twice_is_one_pr_and_the_second_call_updates_it(fake: FakeForge) -> None:
    forge = connect(fake)
    assert forge.find_pull("promote/fraud", "main") is None
    first = forge.open_pull("promote/fraud", "main", "Promote fraud v2", "canary 10%")
    assert first.created and first.state == "open" and first.head == "promote/fraud" and first.base == "main"
    assert first.url.startswith(fake.origin)
    second = forge.open_pull("promote/fraud", "main", "Promote fraud v2", "canary 50%")
    assert not second.created
    assert second.number == first.number and second.body == "canary 50%"
    assert len(fake.state.pulls) == 1 and fake.state.pulls[0]["body"] == "canary 50%"
    # Unchanged title and body: found, nothing written.
    writes = len(fake.writes())
    third = forge.open_pull("promote/fraud", "main", "Promote fraud v2", "canary 50%")
    assert not third.created and third.number == first.number and len(fake.writes()) == writes
    assert forge.find_pull("promote/fraud", "main") == third
    assert forge.get_pull(first.number).body == "canary 50%"


def test_request_shapes_per_forge(fake: FakeForge) -> None:
    forge = connect(fake)
    forge.open_pull("b", "main", "t", "x")
    forge.open_pull("b", "main", "t", "y")
    methods = [(r.method, r.path, r.query) for r in fake.requests]
    if fake.kind == "github":
        assert methods[0] == (
            "GET",
            "/repos/acme/models/pulls",
            {"state": "open", "head": "acme:b", "base": "main", "per_page": "100"},
        )
        assert methods[1][:2] == ("POST", "/repos/acme/models/pulls")
        assert fake.requests[1].body == {"head": "b", "base": "main", "title": "t", "body": "x"}
        assert methods[-1][:2] == ("PATCH", "/repos/acme/models/pulls/101")
        assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    elif fake.kind == "gitlab":
        assert methods[0] == (
            "GET",
            "/projects/acme%2Fmodels/merge_requests",
            {"state": "opened", "source_branch": "b", "target_branch": "main", "per_page": "100"},
        )
        assert fake.requests[1].body == {
            "source_branch": "b",
            "target_branch": "main",
            "title": "t",
            "description": "x",
        }
        assert methods[-1][:2] == ("PUT", "/projects/acme%2Fmodels/merge_requests/1")
        assert fake.requests[0].headers["private-token"] == TOKEN
        assert "authorization" not in fake.requests[0].headers
    else:
        assert methods[0] == ("GET", "/repos/acme/models/pulls", {"state": "open", "limit": "50"})
        assert fake.requests[1].body == {"head": "b", "base": "main", "title": "t", "body": "x"}
        assert methods[-1][:2] == ("PATCH", "/repos/acme/models/pulls/101")
        assert fake.requests[0].headers["authorization"] == f"token {TOKEN}"
    assert all(r.headers["user-agent"] == "modelops-agent" for r in fake.requests)


def test_find_pull_reads_every_page_and_matches_head_and_base(fake: FakeForge) -> None:
    forge = connect(fake)
    for i in range(5):
        forge.open_pull(f"other-{i}", "main", "t", "b")
    target = forge.open_pull("promote/x", "release", "t", "b")
    forge.open_pull("promote/x2", "main", "t", "b")
    found = forge.find_pull("promote/x", "release")
    assert found is not None and found.number == target.number
    assert forge.find_pull("promote/x", "main") is None


def test_open_pull_created_meanwhile_by_someone_else_is_updated(fake: FakeForge) -> None:
    """Between our look-up and our create another writer opened it: their PR is used (422/409)."""
    forge = connect(fake)
    other = connect(fake)
    original = forge.find_pull
    calls: list[PullRequest] = []

    def racing_find(head: str, base: str) -> Any:
        result = original(head, base)
        if not calls:
            calls.append(other.open_pull(head, base, "theirs", "theirs"))
        return result

    forge.find_pull = racing_find  # type: ignore[method-assign]
    pr = forge.open_pull("race", "main", "ours", "ours")
    assert not pr.created and pr.number == calls[0].number and pr.body == "ours"
    assert len(fake.state.pulls) == 1


# --- comments --------------------------------------------------------------------------------


def test_upsert_comment_twice_edits_the_same_comment(fake: FakeForge) -> None:
    forge = connect(fake)
    pr = forge.open_pull("b", "main", "t", "x")
    first = forge.upsert_comment(pr.number, "plan", "diff v1")
    assert first.created and first.url
    second = forge.upsert_comment(pr.number, "plan", "diff v2")
    assert not second.created and second.id == first.id and second.url
    comments = fake.state.comments[pr.number]
    assert len(comments) == 1 and comments[0]["body"] == "<!-- agent:plan -->\ndiff v2"
    last = fake.writes()[-1]
    assert last.method == ("PUT" if fake.kind == "gitlab" else "PATCH")
    assert last.path.endswith(f"/{first.id}")
    # Another marker is another comment; the same body again writes nothing.
    assert forge.upsert_comment(pr.number, "status", "ok").created
    writes = len(fake.writes())
    again = forge.upsert_comment(pr.number, "plan", "diff v2")
    assert not again.created and again.id == first.id and len(fake.writes()) == writes


def test_upsert_comment_finds_its_comment_on_a_later_page(fake: FakeForge) -> None:
    forge = connect(fake)
    pr = forge.open_pull("b", "main", "t", "x")
    for i in range(3):
        fake.add_comment(pr.number, f"a human said {i}\n<!-- agent:plan -->")  # marker not on line 1
    if fake.kind == "gitlab":
        fake.add_comment(pr.number, "<!-- agent:plan -->\nsystem notes are skipped", system=True)
    fake.add_comment(pr.number, "<!-- agent:planned -->\nanother marker")
    mine = fake.add_comment(pr.number, "<!-- agent:plan -->\nold")  # on page 3 (page size 2)
    c = forge.upsert_comment(pr.number, "plan", "new")
    assert c.id == mine and not c.created
    assert any(r.query.get("page") == "3" for r in fake.requests if r.method == "GET")
    assert fake.state.comments[pr.number][-1]["body"] == "<!-- agent:plan -->\nnew"
    assert len(fake.state.comments[pr.number]) == (6 if fake.kind == "gitlab" else 5)


def test_comment_marker_must_be_plain(fake: FakeForge) -> None:
    forge = connect(fake)
    for bad in ["", "a -->", "two\nlines", "-x"]:
        with pytest.raises(ForgeError, match="marker"):
            forge.upsert_comment(1, bad, "body")
    assert fake.requests == []


# --- merge and hooks -------------------------------------------------------------------------


def test_merge_pull_returns_the_merge_commit(fake: FakeForge) -> None:
    forge = connect(fake)
    pr = forge.open_pull("b", "main", "t", "x")
    sha = forge.merge_pull(pr.number, "Promote fraud v2")
    assert sha == f"{pr.number:040x}"
    assert fake.state.pulls[0]["message"] == "Promote fraud v2"
    merged = forge.get_pull(pr.number)
    assert merged.state == "merged" and merged.merge_commit == sha
    assert forge.find_pull("b", "main") is None
    merge = next(r for r in fake.requests if r.path.endswith("/merge"))
    if fake.kind == "gitea":  # answered with no body, merged after a few polls
        assert merge.method == "POST" and merge.body == {"Do": "merge", "MergeMessageField": "Promote fraud v2"}
        assert sum(1 for r in fake.requests if r.method == "GET" and r.path.endswith(f"/pulls/{pr.number}")) >= 2
    elif fake.kind == "github":
        assert merge.method == "PUT" and merge.body["commit_message"] == "Promote fraud v2"
    else:
        assert merge.method == "PUT" and merge.body == {"merge_commit_message": "Promote fraud v2"}


def test_gitea_merge_that_never_shows_is_an_error() -> None:
    f = FakeForge("gitea")
    try:
        forge = connect(f)
        forge.merge_wait = 0.3  # type: ignore[attr-defined]
        f.merge_delay_gets = 10_000
        pr = forge.open_pull("b", "main", "t", "x")
        with pytest.raises(ForgeError, match=r"gitea: POST .*/merge: accepted, but the pull is still 'open'"):
            forge.merge_pull(pr.number)
    finally:
        f.stop()


def test_add_push_webhook_is_idempotent_on_url(fake: FakeForge) -> None:
    forge = connect(fake)
    for i in range(3):  # other hooks, so the look-up pages
        fake.state.hooks.append(
            {"id": 900 + i, "url": f"https://other/{i}"}
            if fake.kind == "gitlab"
            else {"id": 900 + i, "config": {"url": f"https://other/{i}"}}
        )
    hid = forge.add_push_webhook("https://agent.example/webhook", "hook-secret-1")
    again = forge.add_push_webhook("https://agent.example/webhook", "hook-secret-2")
    assert hid == again and len(fake.state.hooks) == 4
    hook = fake.state.hooks[-1]
    last = fake.writes()[-1]
    if fake.kind == "gitlab":
        assert hook["url"] == "https://agent.example/webhook" and hook["push_events"] is True
        assert hook["token"] == "hook-secret-2" and last.method == "PUT"
    else:
        cfg = hook["config"]
        assert cfg == {"url": "https://agent.example/webhook", "content_type": "json", "secret": "hook-secret-2"} | (
            {"insecure_ssl": "0"} if fake.kind == "github" else {}
        )
        assert hook["events"] == ["push"] and hook["active"] is True and last.method == "PATCH"
        assert hook.get("type" if fake.kind == "gitea" else "name") == ("gitea" if fake.kind == "gitea" else "web")
    assert last.path.endswith(f"/hooks/{hid}")


# --- errors, auth, retries, timeouts ---------------------------------------------------------


def test_api_error_names_forge_method_path_status_and_message(fake: FakeForge) -> None:
    forge = connect(fake)
    with pytest.raises(ForgeError) as info:
        forge.get_pull(999)
    text = str(info.value)
    assert info.value.status == 404 and isinstance(info.value, AgentError)
    assert text.startswith(f"{fake.kind}: GET ") and "/999: HTTP 404: " in text
    assert {"github": "Not Found", "gitlab": "404 Not found", "gitea": "The target couldn't be found."}[
        fake.kind
    ] in text


def test_wrong_token_error_never_shows_a_token(fake: FakeForge) -> None:
    wrong = "wrong-token-ABCDEF"
    forge = connect(fake, token=wrong)
    with pytest.raises(ForgeError) as info:
        forge.find_pull("b", "main")
    text = str(info.value)
    assert "HTTP 401" in text and "Bad credentials" in text
    assert wrong not in text and TOKEN not in text and "***" in text
    assert wrong not in repr(forge) and wrong not in repr(forge.http)  # type: ignore[attr-defined]


def test_gitlab_conflict_message_list_is_flattened() -> None:
    f = FakeForge("gitlab")
    try:
        forge = connect(f)
        forge.open_pull("b", "main", "t", "x")
        with pytest.raises(ForgeError, match="HTTP 409: Another open merge request already exists"):
            forge._create_pull("b", "main", "t", "x")  # type: ignore[attr-defined]
    finally:
        f.stop()


def test_get_is_retried_on_503_but_writes_are_not(fake: FakeForge) -> None:
    forge = connect(fake)
    pr = forge.open_pull("b", "main", "t", "x")
    get_path = next(r.path for r in fake.requests if r.method == "GET")
    fake.fail[("GET", get_path)] = [503, 502]
    assert forge.find_pull("b", "main") == replace(pr, created=False)
    fake.fail[("GET", get_path)] = [503, 503, 504]
    with pytest.raises(ForgeError, match="HTTP 504: injected 504"):
        forge.find_pull("b", "main")
    post_path = next(r.path for r in fake.requests if r.method == "POST")
    fake.fail[("POST", post_path)] = [503]
    before = len(fake.requests)
    with pytest.raises(ForgeError, match="HTTP 503"):
        forge.open_pull("c", "main", "t", "x")
    assert [r.method for r in fake.requests[before:]] == ["GET", "POST"]


def test_connection_refused_is_a_forge_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    forge = open_forge(RepoRef("gitea", f"http://127.0.0.1:{port}/api/v1", "o", "r"), TOKEN)
    forge.http.sleep = lambda _s: None  # type: ignore[attr-defined]
    with pytest.raises(ForgeError, match=rf"gitea: GET /repos/o/r/pulls/1: cannot connect to http://127.0.0.1:{port}"):
        forge.get_pull(1)


def test_a_server_that_never_answers_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel accepts; nobody ever answers
    try:
        port = listener.getsockname()[1]
        forge = open_forge(RepoRef("github", f"http://127.0.0.1:{port}", "o", "r"), TOKEN, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ForgeError, match=r"github: GET /repos/o/r/pulls/1: no answer .* within 0.5s"):
            forge.get_pull(1)
        assert time.monotonic() - started < 3.0
    finally:
        listener.close()


def test_open_forge_rejects_bad_tokens_and_kinds() -> None:
    ref = RepoRef("github", "https://api.github.com", "o", "r")
    for bad in ["", " tok", "tok\n", "a\nb"]:
        with pytest.raises(ForgeError, match="token"):
            open_forge(ref, bad)
    with pytest.raises(ForgeError, match="forge kind 'bitbucket'"):
        open_forge(RepoRef("bitbucket", "https://x", "o", "r"), TOKEN)


# --- TLS with a private CA -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_with_a_private_ca(pki: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "srv.pem", pki / "srv.key")
    f = FakeForge("gitea", ssl_context=ctx)
    try:
        assert f.api_url.startswith("https://127.0.0.1:")
        with pytest.raises(ForgeError, match=r"certificate verification failed.*CA file") as info:
            connect(f).find_pull("b", "main")
        assert info.value.status is None and TOKEN not in str(info.value)
        forge = connect(f, ca_file=pki / "ca.pem")
        pr = forge.open_pull("b", "main", "over TLS", "x")
        assert pr.created and forge.find_pull("b", "main") == replace(pr, created=False)
    finally:
        f.stop()


def test_unreadable_ca_file_is_a_forge_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    ref = RepoRef("gitea", "https://git.example.com/api/v1", "o", "r")
    with pytest.raises(ForgeError, match="CA file"):
        open_forge(ref, TOKEN, ca_file=tmp_path / "ca.pem")
    with pytest.raises(ForgeError, match="CA file"):
        open_forge(ref, TOKEN, ca_file=tmp_path / "missing.pem")


# --- repo_ref --------------------------------------------------------------------------------

REMOTES = [
    # (remote, kind, api_url given, expected kind, api_url, owner, name)
    ("https://github.com/acme/models.git", None, None, "github", "https://api.github.com", "acme", "models"),
    ("https://github.com/acme/models", None, None, "github", "https://api.github.com", "acme", "models"),
    ("git@github.com:acme/models.git", None, None, "github", "https://api.github.com", "acme", "models"),
    ("ssh://git@github.com/acme/models.git", None, None, "github", "https://api.github.com", "acme", "models"),
    ("https://x-access-token:t0k@github.com/acme/models.git", None, None, "github", "https://api.github.com", "acme", "models"),
    ("https://ghe.corp.example/acme/models.git", "github", None, "github", "https://ghe.corp.example/api/v3", "acme", "models"),
    ("git@ghe.corp.example:acme/models.git", "github", None, "github", "https://ghe.corp.example/api/v3", "acme", "models"),
    ("https://gitlab.com/group/sub/models.git", None, None, "gitlab", "https://gitlab.com/api/v4", "group/sub", "models"),
    ("git@gitlab.com:group/sub/deeper/models.git", None, None, "gitlab", "https://gitlab.com/api/v4", "group/sub/deeper", "models"),
    ("https://gitlab.com/group/models/-/tree/main", None, None, "gitlab", "https://gitlab.com/api/v4", "group", "models"),
    ("https://code.example/gitlab/team/models.git", "gitlab", "https://code.example/gitlab/api/v4", "gitlab",
     "https://code.example/gitlab/api/v4", "team", "models"),
    ("https://gitlab.example:8443/team/models", "gitlab", None, "gitlab", "https://gitlab.example:8443/api/v4", "team", "models"),
    ("http://127.0.0.1:3000/acme/models.git", "gitea", None, "gitea", "http://127.0.0.1:3000/api/v1", "acme", "models"),
    ("https://git.example.com/gitea/acme/models.git", "gitea", None, "gitea", "https://git.example.com/gitea/api/v1", "acme", "models"),
    ("ssh://git@git.example.com:2222/acme/models.git", "gitea", None, "gitea", "https://git.example.com/api/v1", "acme", "models"),
    ("git@git.example.com:acme/models", "gitea", None, "gitea", "https://git.example.com/api/v1", "acme", "models"),
    ("https://git.example.com/acme/models/", "gitea", "https://git.example.com/api/v1/", "gitea", "https://git.example.com/api/v1", "acme", "models"),
]  # fmt: skip


@pytest.mark.parametrize(("remote", "kind", "api", "want_kind", "want_api", "owner", "name"), REMOTES)
def test_repo_ref(
    remote: str, kind: str | None, api: str | None, want_kind: str, want_api: str, owner: str, name: str
) -> None:
    assert repo_ref(remote, kind, api) == RepoRef(want_kind, want_api, owner, name)


@pytest.mark.parametrize(
    ("remote", "kind", "message"),
    [
        ("https://git.example.com/acme/models.git", None, "pass --forge github|gitlab|gitea"),
        ("https://github.com/acme", None, "must name an owner and a repository"),
        ("https://github.com/acme/models", "bitbucket", "forge kind 'bitbucket'"),
        ("ftp://github.com/acme/models", None, "scheme 'ftp'"),
        ("not a url", None, "expected https://host/owner/name"),
        ("https://user:hunter2@git.example.com/acme/models.git", None, "pass --forge"),
    ],
)
def test_repo_ref_errors(remote: str, kind: str | None, message: str) -> None:
    with pytest.raises(ForgeError, match=message) as info:
        repo_ref(remote, kind)
    assert "hunter2" not in str(info.value)


# --- read_token ------------------------------------------------------------------------------


def test_read_token_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "token"
    f.write_text("  from-file\n")
    monkeypatch.setenv("MY_TOKEN", "from-env")
    monkeypatch.setenv("GITLAB_TOKEN", " from-default \n")
    assert read_token("MY_TOKEN", f, "gitlab") == "from-file"
    assert read_token("MY_TOKEN", None, "gitlab") == "from-env"
    assert read_token(None, None, "gitlab") == "from-default"
    monkeypatch.setenv("GITHUB_TOKEN", "gh")
    monkeypatch.setenv("GITEA_TOKEN", "gt")
    assert read_token(kind="github") == "gh" and read_token(kind="gitea") == "gt"


def test_read_token_errors_name_the_source_never_the_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITEA_TOKEN", raising=False)
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ForgeError, match="GITEA_TOKEN is not set"):
        read_token(kind="gitea")
    with pytest.raises(ForgeError, match="NOPE_TOKEN is not set"):
        read_token("NOPE_TOKEN", kind="gitea")
    with pytest.raises(ForgeError, match="no forge token"):
        read_token()
    monkeypatch.setenv("EMPTY_TOKEN", "  \n")
    with pytest.raises(ForgeError, match="environment variable EMPTY_TOKEN is empty"):
        read_token("EMPTY_TOKEN")
    multi = tmp_path / "multi"
    multi.write_text("secret-line-1\nsecret-line-2\n")
    with pytest.raises(ForgeError, match="more than one line") as info:
        read_token(file=multi)
    assert str(multi) in str(info.value) and "secret-line" not in str(info.value)
    with pytest.raises(ForgeError, match=r"missing.*cannot read"):
        read_token(file=tmp_path / "missing")
    (tmp_path / "empty").write_text("")
    with pytest.raises(ForgeError, match="empty"):
        read_token(file=tmp_path / "empty")
