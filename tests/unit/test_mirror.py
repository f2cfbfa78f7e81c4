"""Unit tests of agent.source.Mirror against real git repositories and `file://` remotes in
tmp_path (no network), and of the Backoff the controller waits with.

https and ssh servers cannot be reached here: for them the tests check what is built (the
command line, the environment, the askpass helper, the mirror's config), run git against a
closed local port, and drive the askpass helper end to end against a local HTTP server that
asks for Basic credentials.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.engine import load_desired
from agent.errors import SourceError
from agent.source import Backoff, Credentials, GitSource, Mirror, open_source, redact_url, run_git
from tests.unit.conftest import EXAMPLE_REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

SECRET = "ghp_s3cr3tT0kenThatMustNeverShow0123456789"


def git(cwd: Path, *args: str) -> str:
    """Run git in cwd with a fixed identity and no user/system config; its stdout."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    cmd = ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


class Remote:
    """A bare repository served as `file://` and the work tree that pushes to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.bare.mkdir()
        git(self.bare, "init", "-q", "--bare")
        self.work.mkdir()
        git(self.work, "init", "-q")
        git(self.work, "remote", "add", "origin", str(self.bare))
        shutil.copytree(EXAMPLE_REPO, self.work / "deploy")
        self.commit("the example repo")

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, message: str, *, force: bool = False) -> str:
        note = self.work / "notes" / f"{message.replace(' ', '-')}.txt"
        note.parent.mkdir(exist_ok=True)
        note.write_text(message)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", *(["--force"] if force else []), "origin", "main")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def children() -> set[int]:
    """The pids of this process's children (running or zombie), from /proc."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def dead(pid: int) -> bool:
    """The process was killed: gone, or a zombie its new parent has not reaped. SIGKILL is
    delivered asynchronously, so a process of the killed group may need a moment to die."""
    for _ in range(1000):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        threading.Event().wait(0.01)
    return False


def processes_in(directory: Path) -> list[int]:
    """Processes of any parent whose working directory is `directory` (a detached git)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == directory:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


# --- polling and fetching ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file-url", "path"])
def test_first_sync_clones_then_only_a_moved_remote_is_fetched(remote: Remote, cache: Path, form: str) -> None:
    first = git(remote.work, "rev-parse", "HEAD")
    mirror = Mirror(remote.url if form == "file-url" else str(remote.bare), "main", cache)
    assert mirror.path.parent == cache.absolute() and mirror.path.name.endswith(".git")
    assert git(mirror.path, "rev-parse", "--is-bare-repository") == "true"
    assert mirror.local_head() is None

    assert mirror.head() == first
    assert mirror.sync() == first
    assert mirror.local_head() == first and mirror.stats["fetches"] == 1

    assert mirror.sync() == first  # a no-change interval: ls-remote only
    assert mirror.stats["fetches"] == 1

    second = remote.commit("second")
    assert mirror.head() == second
    assert mirror.local_head() == first  # head() never fetches
    assert mirror.sync() == second
    assert mirror.stats["fetches"] == 2
    with GitSource(mirror.path) as source:
        assert "notes/second.txt" not in source.snapshot(first).files  # not a manifest path anyway
        assert source.resolve(second).hexsha == second


def test_the_mirror_is_read_through_load_desired_and_open_source(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "main", cache)
    commit = mirror.sync()
    desired = load_desired(mirror.path / "deploy", commit, cached=False)
    assert desired.revision.commit == commit
    assert desired.objects
    expected = load_desired(EXAMPLE_REPO, cached=False)
    assert [o["metadata"]["name"] for o in desired.objects] == [o["metadata"]["name"] for o in expected.objects]
    # the bare repo itself is the repo root; a name that exists inside the git directory
    # ("refs") still means the commit's tree
    source = open_source(mirror.path, commit)
    try:
        assert isinstance(source, GitSource) and source.subdir == ""
        assert sorted(source.snapshot(commit).files)[0].startswith("deploy/")
    finally:
        source.close()
    with pytest.raises(SourceError, match="'refs' does not exist"):
        open_source(mirror.path / "refs", commit).snapshot(commit)


def test_same_url_same_mirror_other_url_other_mirror(remote: Remote, cache: Path, tmp_path: Path) -> None:
    commit = Mirror(remote.url, "main", cache).sync()
    again = Mirror(remote.url, "main", cache)
    assert again.local_head() == commit  # nothing to fetch after a restart
    other = tmp_path / "other.git"
    shutil.copytree(remote.bare, other)
    assert Mirror(other.as_uri(), "main", cache).path != again.path
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".git")[0].startswith("other-")


def test_a_force_push_moves_the_branch(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "main", cache)
    remote.commit("second")
    old = mirror.sync()
    git(remote.work, "reset", "-q", "--hard", "HEAD~1")
    rewritten = remote.commit("rewritten", force=True)
    assert rewritten != old
    assert mirror.sync() == rewritten
    assert mirror.local_head() == rewritten
    # not a fast-forward: the old tip is not in the branch's history any more
    done = subprocess.run(["git", "merge-base", "--is-ancestor", old, "refs/heads/main"], cwd=mirror.path,
                          capture_output=True)
    assert done.returncode == 1


def test_an_unreachable_remote_is_a_source_error_and_the_last_commit_stays(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "main", cache)
    good = mirror.sync()
    moved = remote.bare.with_name("moved.git")
    remote.bare.rename(moved)

    for call in (mirror.head, mirror.sync):
        with pytest.raises(SourceError) as info:
            call()
        assert remote.url in str(info.value) and "\n" not in str(info.value)
    assert mirror.local_head() == good
    assert load_desired(mirror.path / "deploy", good, cached=False).revision.commit == good

    moved.rename(remote.bare)
    newer = remote.commit("after the outage")
    assert mirror.sync() == newer


def test_gc_keeps_the_branch_and_drops_what_a_force_push_left(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "main", cache)
    old = mirror.sync()
    git(remote.work, "reset", "-q", "--hard", "HEAD~0")
    git(remote.work, "commit", "-q", "--amend", "-m", "amended")
    git(remote.work, "push", "-q", "--force", "origin", "main")
    new = mirror.sync()
    mirror.gc()
    assert mirror.local_head() == new
    gone = subprocess.run(["git", "cat-file", "-e", f"{old}^{{commit}}"], cwd=mirror.path, capture_output=True)
    assert gone.returncode != 0
    assert load_desired(mirror.path / "deploy", new, cached=False).revision.commit == new


def test_a_mirror_removed_from_under_it_is_made_again(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "main", cache)
    commit = mirror.sync()
    shutil.rmtree(cache)
    assert mirror.local_head() is None
    assert mirror.sync() == commit and mirror.local_head() == commit


def test_only_lock_files_left_by_the_failed_fetch_are_removed(remote: Remote, cache: Path) -> None:
    """What a fetch killed on timeout leaves would block every later fetch."""
    mirror = Mirror(remote.url, "main", cache)
    mirror.sync()
    ours = mirror.path / "refs" / "heads" / "main.lock"
    ours.write_text("")
    old = mirror.path / "packed-refs.lock"
    old.write_text("")
    os.utime(old, (1_000_000, 1_000_000))
    mirror._remove_stale_locks(since=ours.stat().st_mtime)
    assert not ours.exists() and old.exists()


def test_a_branch_missing_on_the_remote(remote: Remote, cache: Path) -> None:
    mirror = Mirror(remote.url, "release", cache)
    with pytest.raises(SourceError, match=r"no branch 'release'"):
        mirror.sync()
    assert mirror.local_head() is None


@pytest.mark.parametrize("url", ["", "-oProxyCommand=touch /tmp/pwned", "ext::sh -c touch% /tmp/pwned",
                                 "fd::17", "ftp://example.com/repo.git", "https://h/r.git\n"])
def test_bad_urls_are_refused(url: str, cache: Path) -> None:
    with pytest.raises(SourceError):
        Mirror(url, "main", cache)


@pytest.mark.parametrize("branch", ["", "-x", "a..b", "a b", "main.lock", "a:b", "refs/heads/x~1", "x/"])
def test_bad_branch_names_are_refused(branch: str, remote: Remote, cache: Path) -> None:
    with pytest.raises(SourceError, match="not a valid branch name"):
        Mirror(remote.url, branch, cache)


# --- timeouts and processes --------------------------------------------------------------------


def test_a_hanging_transport_times_out_and_its_process_group_is_killed(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = tmp_path / "ssh.pid"
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake_ssh))
    before = children()
    mirror = Mirror("ssh://git.example.invalid/models.git", "main", cache, timeout=1.5)

    with pytest.raises(SourceError, match=r"ssh://git\.example\.invalid/models\.git: timed out"):
        mirror.head()

    assert children() - before == set()
    assert dead(int(pidfile.read_text()))  # the transport was killed with git's process group


def test_run_git_kills_the_whole_group_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    before = children()
    with pytest.raises(Exception) as info:
        run_git(["sh", "-c", script], env=dict(os.environ), timeout=1.5)
    assert getattr(info.value, "timed_out", False)
    assert children() - before == set()
    assert dead(int(pidfile.read_text()))


def test_200_polls_leave_no_git_process(remote: Remote, cache: Path) -> None:
    before = children()
    mirror = Mirror(remote.url, "main", cache)
    for cycle in range(200):
        if cycle % 50 == 49:
            remote.commit(f"cycle {cycle}")
        mirror.head()
        mirror.sync()
    mirror.close()
    assert mirror.stats["fetches"] == 1 + 4
    assert mirror.stats["ls_remote"] == 400
    assert children() - before == set()
    assert processes_in(mirror.path) == []


# --- credentials -------------------------------------------------------------------------------


@pytest.fixture
def token_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    monkeypatch.setenv("MODELS_GIT_TOKEN", SECRET)
    monkeypatch.setenv("GIT_CURL_VERBOSE", "1")  # would print the Authorization header: not passed on
    # a closed local port: git really runs, with the token, and fails without any network;
    # a space in the path of the askpass helper
    mirror = Mirror("https://127.0.0.1:1/org/models.git", "main", tmp_path / "cache dir",
                    credentials=Credentials(token_env="MODELS_GIT_TOKEN"), timeout=20)
    yield mirror
    mirror.close()


def test_a_token_is_never_in_argv_config_helper_or_errors(token_mirror: Mirror) -> None:
    argv = token_mirror.git_argv(["ls-remote", "--", token_mirror.remote.url, "refs/heads/main"])
    assert not any(SECRET in arg for arg in argv)
    assert SECRET not in git(token_mirror.path, "config", "--list")
    assert SECRET not in "".join(p.read_text(errors="replace") for p in token_mirror.path.iterdir() if p.is_file())
    helper = token_mirror.path / "modelops-askpass.sh"
    assert stat.S_IMODE(helper.stat().st_mode) == 0o700

    with pytest.raises(SourceError) as info:
        token_mirror.sync()
    assert "https://127.0.0.1:1/org/models.git" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(token_mirror)


def test_the_token_goes_only_to_the_child_through_the_askpass_helper(token_mirror: Mirror) -> None:
    env = token_mirror._env(SECRET)
    assert env["GIT_ASKPASS"] == str(token_mirror.path / "modelops-askpass.sh")
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["LC_ALL"] == "C"
    assert env["GIT_ALLOW_PROTOCOL"] == "https"  # no redirect of the token to plain http
    assert [k for k, v in env.items() if SECRET in v] == ["MODELOPS_GIT_TOKEN"]
    assert SECRET not in "".join(token_mirror._env().values())  # calls without the token
    assert "GIT_CURL_VERBOSE" not in env
    assert "MODELS_GIT_TOKEN" in os.environ  # the agent's own environment is left alone
    helper = str(token_mirror.path / "modelops-askpass.sh")
    ask = [subprocess.run([helper, prompt], env=env, capture_output=True, text=True, check=True).stdout
           for prompt in ("Username for 'https://127.0.0.1:1': ", "Password for 'https://x@127.0.0.1:1': ")]
    assert ask == ["x-access-token\n", f"{SECRET}\n"]


def test_the_askpass_helper_answers_a_real_basic_auth_challenge(token_mirror: Mirror) -> None:
    """Git itself, over plain HTTP to a local server (the Mirror only sends tokens over https,
    which cannot be served here): the token arrives in the Authorization header only."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/org/models.git"
        env = {**token_mirror._env(SECRET), "GIT_ALLOW_PROTOCOL": "http"}
        with pytest.raises(Exception) as info:
            run_git(token_mirror.git_argv(["ls-remote", "--", url]), env=env, timeout=20,
                    cwd=token_mirror.path, secrets=[SECRET])
    finally:
        server.shutdown()
        server.server_close()
    expected = "Basic " + base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()
    assert SECRET not in str(info.value) and expected not in str(info.value)
    assert all(SECRET not in path for path, _ in seen)
    assert (seen[0][1], seen[-1][1]) == (None, expected)


def test_a_token_from_a_file_is_read_on_every_call(cache: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    creds = Credentials(token_file=token_file, username="oauth2")
    assert creds.token() == SECRET
    token_file.write_text("rotated\n")
    assert creds.token() == "rotated"
    token_file.write_text("")
    with pytest.raises(SourceError, match="holds no token"):
        creds.token()
    with pytest.raises(SourceError, match="cannot read the git token file"):
        Credentials(token_file=tmp_path / "missing").token()


def test_tokens_are_refused_where_they_would_leak(cache: Path, tmp_path: Path) -> None:
    creds = Credentials(token_env="MODELS_GIT_TOKEN")
    with pytest.raises(SourceError, match="token in the URL") as info:
        Mirror(f"https://bot:{SECRET}@git.example.com/org/models.git", "main", cache)
    assert SECRET not in str(info.value) and "bot:***@git.example.com" in str(info.value)
    with pytest.raises(SourceError, match="only sent over https"):
        Mirror("http://git.example.com/org/models.git", "main", cache, credentials=creds)
    with pytest.raises(SourceError, match="only sent over https"):
        Mirror("ssh://git@git.example.com/org/models.git", "main", cache, credentials=creds)
    with pytest.raises(SourceError, match="needs an ssh URL"):
        Mirror("https://git.example.com/org/models.git", "main", cache,
               credentials=Credentials(ssh_key_file=tmp_path / "id"))
    assert redact_url(f"https://bot:{SECRET}@h:8443/r.git") == "https://bot:***@h:8443/r.git"
    assert redact_url("git@github.com:org/r.git") == "git@github.com:org/r.git"


@pytest.mark.parametrize("url", ["ssh://git@git.example.com:2222/org/models.git", "git@git.example.com:org/models.git"])
def test_an_ssh_url_gets_its_key_and_known_hosts(url: str, cache: Path, tmp_path: Path) -> None:
    key = tmp_path / "keys dir" / "id_ed25519"
    known = tmp_path / "known_hosts"
    mirror = Mirror(url, "main", cache, credentials=Credentials(ssh_key_file=key, known_hosts_file=known))
    assert mirror.remote.kind == "ssh" and mirror.url == url
    env = mirror._env()
    assert env["GIT_SSH_COMMAND"] == (
        f"ssh -i '{key}' -o IdentitiesOnly=yes -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        "-o BatchMode=yes -o ConnectTimeout=60")
    assert env["GIT_ALLOW_PROTOCOL"] == "ssh"
    assert "GIT_ASKPASS" in env and env["GIT_ASKPASS"] == ""


def test_a_path_that_looks_like_scp_but_exists_is_local(remote: Remote, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    odd = tmp_path / "host:repo.git"
    shutil.copytree(remote.bare, odd)
    monkeypatch.chdir(tmp_path)
    mirror = Mirror("host:repo.git", "main", cache)
    assert mirror.remote.kind == "local"
    assert mirror.sync() == git(remote.work, "rev-parse", "HEAD")


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_grows_is_capped_and_resets() -> None:
    backoff = Backoff(initial=1, maximum=30, jitter=0)
    assert [backoff.failure() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.success()
    assert backoff.failures == 0 and backoff.failure() == 1


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(initial=2, maximum=60, jitter=0.5, rng=random.Random(7))
    delays = []
    for _ in range(12):
        delay = backoff.failure()
        base = backoff.base()
        assert base * 0.5 <= delay <= base <= 60
        delays.append(delay)
    assert len(set(delays)) == len(delays)  # jittered, not a fixed sequence
    backoff.success()
    assert 1 <= backoff.failure() <= 2


def test_backoff_survives_a_long_outage() -> None:
    backoff = Backoff(initial=1, maximum=300, jitter=0)
    for _ in range(5000):
        delay = backoff.failure()
    assert delay == 300
    with pytest.raises(ValueError):
        Backoff(initial=0)
