"""git plumbing for the write side (promotion, registry sync, the controller's write-back):
every call through the one runner (`run_git`: a timeout, the process group killed and reaped)
with no prompt; a failure is a GitError naming the git verb and git's own first lines.

A token reaches git only through one child's environment, answered by the askpass helper
(agent.source._askpass), with `credential.helper` emptied so no helper stores it: never in argv,
the URL or a config file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SourceError
from agent.source._askpass import askpass_env, write_askpass
from agent.source._mirror import redact_url
from agent.source._run import GitFailed, run_git

GIT_TIMEOUT = 60.0


class GitError(SourceError):
    """A git command of the write side failed (or timed out, or git is missing)."""


@dataclass(frozen=True)
class GitAuth:
    """How one git child authenticates: the token (https remotes only) and a CA bundle."""

    token: str | None = None
    username: str = "x-access-token"
    ca_file: Path | None = None
    ssh_command: str | None = None  # GIT_SSH_COMMAND for an ssh remote (the controller's key and known_hosts)

    def __repr__(self) -> str:  # never the token
        return f"GitAuth(token={'***' if self.token else None}, username={self.username!r}, ca_file={self.ca_file})"

    @property
    def secrets(self) -> list[tuple[str, str]]:
        """The token as git sends it (Basic `username:token`): masked in every encoding."""
        return [(self.username, self.token)] if self.token else []


@dataclass(frozen=True)
class PushPlan:
    """Where a promotion goes: the remote (as given and its URL), the branch pushed, the PR's base."""

    remote: str
    url: str
    head: str
    base: str


def git(cwd: Path, *args: str, env: dict[str, str] | None = None, secrets: Sequence[tuple[str, str]] = ()) -> str:
    """git through the source edge's runner (timeout, process group killed and reaped). `env`:
    extra variables for this one child; `secrets`: masked in any error message."""
    try:
        return run_git(["git", *args], env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
                       timeout=GIT_TIMEOUT, cwd=cwd, secrets=secrets)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    except GitFailed as exc:
        rest = list(args)
        while rest[:1] == ["-c"]:  # -c NAME=VALUE options before the subcommand
            rest = rest[2:]
        verb = " ".join(rest[:1] + [a for a in rest[1:2] if not a.startswith("-")])
        if exc.timed_out:
            raise GitError(f"git {verb} took longer than {GIT_TIMEOUT:g}s") from exc
        detail = [line for line in exc.stderr.strip().splitlines() if line.strip()]
        fatal = [line for line in detail if line.startswith(("fatal:", "error:", "remote:", " ! ["))]
        raise GitError(f"git {verb} failed: {'; '.join((fatal or detail or ['no error message'])[:2])}") from exc


def _is_https(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


@contextlib.contextmanager
def git_auth(auth: GitAuth, url: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """(`-c` options, environment) for one git child talking to `url`. A token reaches git only
    through that child's environment, answered by an askpass script holding no secret; the
    credential helpers are emptied so none stores it. Never in argv, the URL or a config file."""
    config: list[str] = []
    ca: dict[str, str] = {}
    if auth.ca_file is not None:  # the variable too: an inherited GIT_SSL_CAINFO would win over the config
        path = str(Path(auth.ca_file).resolve())
        config += ["-c", f"http.sslCAInfo={path}"]
        ca = {"GIT_SSL_CAINFO": path}
    if auth.ssh_command and not _is_https(url):
        ca["GIT_SSH_COMMAND"] = auth.ssh_command
    if not auth.token or not _is_https(url):
        yield config, ca
        return
    with tempfile.TemporaryDirectory(prefix="modelops-askpass-") as directory:
        script = Path(directory) / "askpass.sh"
        write_askpass(script)
        yield [*config, "-c", "credential.helper="], {**ca, **askpass_env(script, auth.token, auth.username)}


def _remote(root: Path, auth: GitAuth, url: str, *args: str) -> str:
    """A git command that talks to `url` with `auth`."""
    with git_auth(auth, url) as (config, env):
        return git(root, *config, *args, env=env, secrets=auth.secrets)


def git_toplevel(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--show-toplevel").strip())


def git_head(root: Path) -> str:
    """The commit HEAD is at."""
    return git(root, "rev-parse", "--verify", "HEAD^{commit}").strip()


def current_branch(root: Path) -> str:
    """The checked-out branch (`HEAD` when detached)."""
    return git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()


def has_ref(root: Path, ref: str) -> bool:
    try:
        git(root, "rev-parse", "--verify", "--quiet", ref)
    except GitError:
        return False
    return True


def dirty_paths(cwd: Path, *paths: str) -> list[str]:
    """The tracked files under `paths` with uncommitted changes."""
    out = git(cwd, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def resolve_remote(root: Path, remote: str) -> str:
    """The URL of remote `remote` (a name of `git remote`), or `remote` itself (a URL or path)."""
    names = git(root, "remote").split()
    if remote in names:
        return git(root, "remote", "get-url", "--push", remote).strip()
    if remote.startswith("-") or not remote:
        raise GitError(f"{remote!r} is not a remote")
    return remote


def remote_default_branch(root: Path, remote: str, auth: GitAuth, url: str) -> str:
    """The remote's default branch (`git ls-remote --symref REMOTE HEAD`), else main."""
    out = _remote(root, auth, url, "ls-remote", "--symref", remote, "HEAD")
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/"):-len("\tHEAD")]
    return "main"


def plan_push(root: Path, remote: str, branch: str | None, base: str | None, auth: GitAuth) -> PushPlan:
    """Where --push goes, worked out before anything is written: the remote must exist, the
    branch pushed is --branch or the current one, which must not be the PR's base."""
    git(root, "rev-parse", "--show-toplevel")
    url = resolve_remote(root, remote)
    if branch is not None:
        git(root, "check-ref-format", "--branch", branch)
    head = branch or current_branch(root)
    if head == "HEAD":
        raise GitError("HEAD is detached: name the branch to push with --branch NAME")
    if base is None:
        base = remote_default_branch(root, remote, auth, url)
    git(root, "check-ref-format", "--branch", base)
    if head == base:
        raise GitError(f"the branch to push, {head}, is the PR's base ({base}) on {redact_url(url)}: name a new "
                       "branch with --branch NAME")
    return PushPlan(remote=remote, url=url, head=head, base=base)


def push_branch(root: Path, target: PushPlan, auth: GitAuth) -> None:
    """git push the branch to the remote (a no-op when the remote has it already)."""
    if not has_ref(root, f"refs/heads/{target.head}"):
        raise GitError(f"no branch {target.head} to push: nothing was committed on it")
    _remote(root, auth, target.url, "push", "--quiet", "--porcelain", target.remote,
            f"refs/heads/{target.head}:refs/heads/{target.head}")


def base_commit(root: Path, target: PushPlan, auth: GitAuth) -> str | None:
    """The commit the remote's base branch is at, fetched when it is not here yet; None when
    the remote has no such branch."""
    with git_auth(auth, target.url) as (config, env):
        out = git(root, *config, "ls-remote", target.remote, f"refs/heads/{target.base}", env=env,
                  secrets=auth.secrets)
        sha = out.split()[0] if out.split() else None
        if sha is None:
            return None
        try:
            git(root, "cat-file", "-e", f"{sha}^{{commit}}")
        except GitError:
            git(root, *config, "fetch", "--quiet", "--no-tags", target.remote, f"refs/heads/{target.base}",
                env=env, secrets=auth.secrets)
    return sha


def clone_branch(url: str, branch: str, work: Path, auth: GitAuth,
                 author: tuple[str, str] = ("modelops-agent", "modelops-agent@modelops.invalid")) -> None:
    """A fresh single-branch clone of url@branch at `work` (which must not exist), committing as
    `author`: where the controller makes the commits it pushes."""
    _remote(work.parent, auth, url, "clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch, url,
            str(work))
    for key, value in (("user.name", author[0]), ("user.email", author[1]), ("commit.gpgsign", "false")):
        git(work, "config", key, value)


def branch_file(root: Path, branch: str, repo_path: str) -> bytes | None:
    """The content of `repo_path` on local branch `branch`; None when there is no such branch
    (or file)."""
    if not has_ref(root, f"refs/heads/{branch}^{{commit}}"):
        return None
    try:
        return run_git(["git", "cat-file", "blob", f"refs/heads/{branch}:{repo_path}"],
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=GIT_TIMEOUT, cwd=root).encode("utf-8")
    except GitFailed:
        return None


def fetch_branch(root: Path, target: PushPlan, auth: GitAuth) -> bool:
    """Fetch the remote's branch target.head into the local branch of that name when the remote
    has it and the local repo has not: True when the local branch exists afterwards."""
    if has_ref(root, f"refs/heads/{target.head}"):
        return True
    with git_auth(auth, target.url) as (config, env):
        out = git(root, *config, "ls-remote", target.remote, f"refs/heads/{target.head}", env=env,
                  secrets=auth.secrets)
        if not out.split():
            return False
        git(root, *config, "fetch", "--quiet", "--no-tags", target.remote,
            f"refs/heads/{target.head}:refs/heads/{target.head}", env=env, secrets=auth.secrets)
    return True


def commit_on_branch(root: Path, branch: str, parent: str, repo_path: str, content: bytes, message: str) -> str:
    """A new commit of `parent`'s tree with `repo_path` replaced by `content`, as the new local
    branch `branch` (refused when it exists): made with a temporary index, so the work tree, the
    index and the checked-out branch are untouched. Returns the commit."""
    git(root, "check-ref-format", "--branch", branch)
    with tempfile.TemporaryDirectory(prefix="modelops-commit-") as directory:
        data = Path(directory) / "content"
        data.write_bytes(content)
        blob = git(root, "hash-object", "-w", "--no-filters", str(data)).strip()
        listed = git(root, "ls-tree", parent, "--", repo_path).split()
        mode = listed[0] if listed else "100644"
        env = {"GIT_INDEX_FILE": str(Path(directory) / "index")}
        git(root, "read-tree", parent, env=env)
        git(root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{repo_path}", env=env)
        tree = git(root, "write-tree", env=env).strip()
    commit = git(root, "commit-tree", tree, "-p", parent, "-m", message).strip()
    git(root, "update-ref", f"refs/heads/{branch}", commit, "")  # "": only if the branch does not exist
    return commit
