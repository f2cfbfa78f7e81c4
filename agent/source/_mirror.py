"""A Git remote kept as a local bare mirror: the edge the controller polls every interval.

Every interval the controller asks `head()` (one `git ls-remote`, cheap) and, when the remote
moved, `sync()` fetches that one branch into the mirror, force-pushes included. The rest of the
agent reads commits from `Mirror.path` with the ordinary `GitSource` / `open_source` (a bare
repository, or `path / "sub/dir"` for a subdirectory).

Why git the CLI and not GitPython here: the network is where processes hang, and a child we
start ourselves can be given a timeout, its own process group (killed whole on timeout:
git-remote-https, ssh, upload-pack) and be reaped, so no git process outlives a call.

Secrets: a token never goes into a URL, a command line or the mirror's git config. It is read
from its file or environment variable for each call and handed only to that git child, in
the environment of a tiny askpass helper script (no secret in it) that git runs when the
server asks for credentials. Git runs with no system or global config (no credential helper
that would store the token, no `url.insteadOf` rewriting the remote) and never prompts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from agent.errors import SourceError
from agent.source._askpass import ASKPASS_VARIABLES, askpass_env, write_askpass
from agent.source._credentials import Credentials
from agent.source._run import GitFailed, run_git

__all__ = ["Backoff", "Credentials", "GitFailed", "Mirror", "PushDenied", "redact_url", "redact_urls", "run_git"]

_ASKPASS_NAME = "modelops-askpass.sh"
# Inherited GIT_* variables that only say how to reach a server; every other one would change
# which repository or config git uses (GIT_DIR, GIT_CONFIG_*, GIT_ASKPASS) or print the
# Authorization header to stderr (GIT_CURL_VERBOSE), which ends up in error messages.
_INHERITED_GIT_ENV = frozenset({
    "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_PROXY_COMMAND",
})
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^@/:]+:(?!//)")
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$|/\.")
_LOCK_FILES = ("HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock", "FETCH_HEAD.lock")


def redact_url(url: str) -> str:
    """The URL as it may be printed: any password in its user info replaced by `***`."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


def redact_urls(text: str) -> str:
    """`text` (an error message, git's stderr) with the user info of every URL in it dropped:
    a user name may be a token too, so nothing of it is shown."""
    return _URL_USERINFO.sub(r"\1", text)


@dataclass
class _Remote:
    """A parsed remote: what git is given, how it is shown, which kind of transport."""

    url: str
    shown: str
    kind: str  # "local", "file", "https", "http", "ssh"


def _parse_remote(url: str) -> _Remote:
    if not url or url.startswith("-") or any(c in url for c in "\x00\r\n"):
        raise SourceError(f"not a git remote URL: {url!r}")
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*::", url):  # git's <transport>::<address>, e.g. ext::<command>
        raise SourceError(f"{redact_url(url)}: transport helpers are not supported (use https, ssh, file or a path)")
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in ("file", "https", "http", "ssh"):
            raise SourceError(f"{redact_url(url)}: unsupported git URL scheme {scheme!r} (use https, ssh, file or a path)")
        parts = urlsplit(url)
        if parts.password is not None:
            raise SourceError(f"{redact_url(url)}: a password or token in the URL would show in process lists and "
                              "git config; pass it with a token file or environment variable instead")
        return _Remote(url=url, shown=url, kind=scheme)
    if _SCP_LIKE.match(url) and not os.path.exists(url):
        return _Remote(url=url, shown=url, kind="ssh")
    path = os.path.abspath(url)
    return _Remote(url=path, shown=path, kind="local")


def _check_branch(branch: str) -> None:
    if not branch or _BAD_BRANCH.search(branch):
        raise SourceError(f"not a valid branch name: {branch!r}")


def _mirror_dir_name(shown_url: str) -> str:
    """A readable and collision-free directory name: the repo's last path part and a hash."""
    digest = hashlib.sha256(shown_url.encode()).hexdigest()[:16]
    last = re.split(r"[/:]", shown_url.rstrip("/"))[-1].removesuffix(".git")
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", last).strip(".-")[:40] or "repo"
    return f"{slug}-{digest}.git"


class PushDenied(SourceError):
    """The remote refused these credentials a push (Mirror.check_push): a read-only token or
    deploy key, or none at all."""


def _one_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:", "ssh:"))]
    return "; ".join((fatal or lines)[-2:])[:500] or "no error message"


class Mirror:
    """One bare mirror repository of one remote URL under `cache_dir`, tracking one branch.

    Writes (sync, gc) hold a thread lock and a file lock next to the mirror, so threads and
    processes may share a cache_dir; a mirror removed from under it is made again on sync."""

    def __init__(self, url: str, branch: str, cache_dir: str | Path, *, credentials: Credentials | None = None,
                 timeout: float = 60.0) -> None:
        self.remote = _parse_remote(url)
        _check_branch(branch)
        self.branch = branch
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self._check_credentials()
        cache = Path(cache_dir)
        self.path = (cache / _mirror_dir_name(self.remote.shown)).absolute()
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self.stats: dict[str, int] = {"ls_remote": 0, "fetches": 0, "errors": 0}
        self._askpass = self.path / _ASKPASS_NAME
        self._ensure_repo()

    @property
    def url(self) -> str:
        """The remote as it may be shown in messages and logs (never with a secret)."""
        return self.remote.shown

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mirror({self.url!r}, {self.branch!r}, path={str(self.path)!r})"

    # --- the two operations of an interval -------------------------------------------------

    def head(self) -> str:
        """The commit the remote branch is at now (`git ls-remote`), or SourceError."""
        self.stats["ls_remote"] += 1
        if not (self.path / "HEAD").is_file():  # git runs inside the mirror: make it again if removed
            self._ensure_repo()
        ref = f"refs/heads/{self.branch}"
        out = self._remote_git(["ls-remote", "--", self.remote.url, ref])
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
                return sha
        self.stats["errors"] += 1
        raise SourceError(f"{self.url}: no branch {self.branch!r}")

    def sync(self) -> str:
        """Fetch the branch when the remote moved (force-pushes too); the commit now at it.

        On any failure the mirror keeps its last good state and SourceError names the URL."""
        remote = self.head()
        with self._locked():
            self._create_if_missing()
            if self.local_head() == remote:
                return remote
            self.stats["fetches"] += 1
            started = time.time()
            try:
                self._remote_git(
                    ["fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--quiet", "--",
                     self.remote.url, f"+refs/heads/{self.branch}:refs/heads/{self.branch}"],
                )
            except SourceError:
                self._remove_stale_locks(started)
                raise
            now = self.local_head()
        if now is None:  # the fetch said it worked but left no branch: say so, not KeyError later
            raise SourceError(f"{self.url}: fetched, but the mirror has no branch {self.branch!r}")
        return now

    def local_head(self) -> str | None:
        """The commit the mirror's branch is at (None before the first fetch); no network."""
        try:
            out = run_git(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}^{{commit}}"],
                          env=self._env(), timeout=self.timeout, cwd=self.path)
        except GitFailed as exc:
            if exc.timed_out:
                raise SourceError(f"{self.path}: git rev-parse timed out after {self.timeout:g}s") from None
            return None
        except FileNotFoundError:  # the mirror was removed: nothing fetched
            return None
        return out.strip() or None

    def check_push(self) -> None:
        """Whether these credentials may push to the branch: `git push --dry-run` of the mirror's
        branch to it. A dry run sends nothing, but the server's push service must accept the
        credentials before it lists its refs (an https forge answers 403 to a read-only token,
        an ssh forge refuses a read-only deploy key). `--force` only keeps a branch that moved
        since the fetch from counting as a (client-side) rejection. PushDenied when refused;
        SourceError when the remote did not answer in time."""
        head = self.local_head()
        if head is None:
            raise SourceError(f"{self.url}: nothing fetched yet, so no push can be tried")
        self._remote_git(["push", "--dry-run", "--force", "--porcelain", "--no-verify", "--", self.remote.url,
                          f"{head}:refs/heads/{self.branch}"], failed=PushDenied)

    def gc(self) -> None:
        """Pack the mirror and drop what force-pushes left unreachable. Automatic gc is off
        (it would run detached, outliving the call); the controller calls this now and then."""
        with self._locked():
            try:
                run_git(["git", "-c", "gc.autoDetach=false", "gc", "--quiet", "--prune=now"], env=self._env(),
                        timeout=max(self.timeout, 600.0), cwd=self.path)
            except GitFailed as exc:
                reason = "timed out" if exc.timed_out else _one_line(exc.stderr)
                raise SourceError(f"{self.path}: git gc: {reason}") from None

    def close(self) -> None:
        """Nothing stays open between calls (each git child is reaped when it ends)."""
        return None

    # --- internals -------------------------------------------------------------------------

    def _check_credentials(self) -> None:
        creds, kind = self.credentials, self.remote.kind
        if creds.has_token and creds.has_ssh:
            raise SourceError(f"{self.url}: give either a token or an ssh key, not both")
        if creds.has_token and kind != "https":
            raise SourceError(f"{self.url}: a token is only sent over https"
                              + (" (http would show it to the network)" if kind == "http" else ""))
        if creds.has_ssh and kind != "ssh":
            raise SourceError(f"{self.url}: an ssh key or known_hosts file needs an ssh URL")
        if creds.ca_file is not None and kind != "https":
            raise SourceError(f"{self.url}: a CA file is only used for https")
        if creds.has_token and any(c in creds.username for c in "\x00\r\n"):
            raise SourceError("the git user name holds a line break")

    def _ensure_repo(self) -> None:
        with self._locked():
            self._create_if_missing()

    def _create_if_missing(self) -> None:
        """Create the bare repository once; its config holds the URL without any secret."""
        if not (self.path / "HEAD").is_file():
            env = self._env()
            try:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                run_git(["git", "init", "--quiet", "--bare", "--", str(self.path)], env=env, timeout=self.timeout,
                        cwd=self.path)
                # for people looking at the mirror; git is always given the URL itself
                for key, value in (("remote.origin.url", self.remote.url), ("gc.auto", "0")):
                    run_git(["git", "config", "--", key, value], env=env, timeout=self.timeout, cwd=self.path)
                run_git(["git", "symbolic-ref", "HEAD", f"refs/heads/{self.branch}"], env=env,
                        timeout=self.timeout, cwd=self.path)
            except GitFailed as exc:
                raise SourceError(f"{self.path}: cannot create the mirror: {_one_line(exc.stderr)}") from None
            except OSError as exc:
                raise SourceError(f"{self.path}: cannot create the mirror: {exc.strerror or exc}") from None
        if self.credentials.has_token and not self._askpass.is_file():
            write_askpass(self._askpass)

    def _env(self, token: str | None = None) -> dict[str, str]:
        """The environment of a git child: hermetic config, no prompt, C locale."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GIT_") or k in _INHERITED_GIT_ENV}
        env.pop("SSH_ASKPASS", None)
        for name in ASKPASS_VARIABLES:
            env.pop(name, None)
        if self.credentials.token_env:  # the token is handed over under our name only, when needed
            env.pop(self.credentials.token_env, None)
        env.update({
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",  # empty: no askpass program at all (not SSH_ASKPASS, not a GUI)
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # only the remote's own transport: an https remote cannot redirect the token to http
            "GIT_ALLOW_PROTOCOL": "file" if self.remote.kind == "local" else self.remote.kind,
            # a protection against being run from inside a repo's hook: never look upwards
            "GIT_CEILING_DIRECTORIES": str(self.path.parent),
        })
        if token is not None:
            env.update(askpass_env(self._askpass, token, self.credentials.username))
        if self.credentials.has_ssh:
            env["GIT_SSH_COMMAND"] = self.ssh_command()
        if self.credentials.ca_file is not None:  # this CA only: an inherited GIT_SSL_CAPATH would add others
            env["GIT_SSL_CAINFO"] = os.path.abspath(self.credentials.ca_file)
            env.pop("GIT_SSL_CAPATH", None)
        return env

    def ssh_command(self) -> str:
        """GIT_SSH_COMMAND for the key and known_hosts given: no agent keys, no unknown hosts,
        no prompt, a bounded connect."""
        creds = self.credentials
        parts = ["ssh"]
        if creds.ssh_key_file is not None:
            parts += ["-i", str(creds.ssh_key_file), "-o", "IdentitiesOnly=yes"]
        if creds.known_hosts_file is not None:
            parts += ["-o", f"UserKnownHostsFile={creds.known_hosts_file}"]
        parts += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                  "-o", f"ConnectTimeout={max(1, int(self.timeout))}"]
        return shlex.join(parts)

    def git_argv(self, args: Sequence[str]) -> list[str]:
        """The command line of one git call (exposed so tests can show no secret is in it)."""
        return ["git", "-c", "credential.helper=", *args]

    def _remote_git(self, args: Sequence[str], *, failed: type[SourceError] = SourceError) -> str:
        """Run a git command that talks to the remote (from inside the mirror, so no other
        repository's config applies); failures become a SourceError naming the URL (`failed`
        when git ran and said no, not on a timeout or a missing git)."""
        token = self.credentials.token() if self.credentials.has_token else None
        self.credentials.ca_path()  # readable now, or a SourceError naming it
        if token is not None and not self._askpass.is_file():
            write_askpass(self._askpass)
        secrets = [] if token is None else [(self.credentials.username, token)]
        try:
            return run_git(self.git_argv(args), env=self._env(token), timeout=self.timeout, cwd=self.path,
                           secrets=secrets)
        except GitFailed as exc:
            self.stats["errors"] += 1
            if exc.timed_out:
                raise SourceError(f"git {args[0]} {self.url}: timed out after {self.timeout:g}s") from None
            raise failed(f"git {args[0]} {self.url}: {_one_line(exc.stderr)}") from None
        except OSError as exc:  # git itself missing, the mirror directory removed
            self.stats["errors"] += 1
            raise SourceError(f"git {args[0]} {self.url}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer per mirror, across threads and processes sharing the cache dir."""
        with self._thread_lock:
            try:
                self._lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise SourceError(f"{self._lock_path}: cannot lock the mirror: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _remove_stale_locks(self, since: float) -> None:
        """A fetch killed on timeout leaves git's `*.lock` files; we hold the mirror's lock,
        so those made since it started are ours and would block every later fetch."""
        candidates = [self.path / name for name in _LOCK_FILES]
        candidates.append(self.path / "refs" / "heads" / f"{self.branch}.lock")
        for lock in candidates:
            with contextlib.suppress(OSError):
                if lock.stat().st_mtime >= since - 1:
                    lock.unlink()


@dataclass
class Backoff:
    """Delays between failed polls: exponential, capped, each lowered by a random share of at
    most `jitter` (so agents that lost the same remote do not retry in lockstep), reset on success."""

    initial: float = 1.0
    maximum: float = 300.0
    factor: float = 2.0
    jitter: float = 0.5  # a delay is drawn from [base * (1 - jitter), base]
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1 or not (0 <= self.jitter <= 1):
            raise ValueError("Backoff needs 0 < initial <= maximum, factor >= 1 and 0 <= jitter <= 1")

    def base(self) -> float:
        """The un-jittered delay after the current number of failures (0 before any)."""
        if self.failures == 0:
            return 0.0
        # exponent bounded so a long outage cannot overflow the float
        exponent = min(self.failures - 1, 1024)
        try:
            return min(self.maximum, self.initial * self.factor ** exponent)
        except OverflowError:
            return self.maximum

    def failure(self) -> float:
        """Count one more failure; the seconds to wait before the next try."""
        self.failures += 1
        base = self.base()
        return base * (1 - self.jitter * self.rng.random())

    def success(self) -> None:
        self.failures = 0
