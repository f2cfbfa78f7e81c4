"""A local Gitea: a real Git forge (HTTPS with a local CA, API tokens, webhooks) for the
agent's tests and demo, so the agent is tested as a Git client the way it runs in production.

Like the control plane, everything a forge owns (app.ini, SQLite database, repositories,
certificates, log, state file) is under its directory, its port is picked free, and its one
process is started detached and identified by pid and start time (devenv.cluster._processes),
so `forge_down` never signals a stranger and leaves no process behind.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.cluster import _pki, _processes
from devenv.cluster._build import repo_root
from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc
from devenv.cluster._server import load_state, locked, port_taken, proc_of, run_build, save_state

__all__ = ["ForgeInfo", "forge_binaries", "forge_create_repo", "forge_down", "forge_up"]

_STATE_VERSION = 1
_ADMIN_USER = "modelops"  # "admin" is a name Gitea reserves
_ADMIN_EMAIL = "modelops@example.com"
_HTTP_TIMEOUT = 10.0
_CLI_TIMEOUT = 120.0
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class ForgeInfo:
    """How to reach a running forge, as its admin."""

    url: str  # "https://127.0.0.1:PORT/" (ROOT_URL)
    api_url: str  # url + "api/v1"
    ca_file: Path  # PEM of the CA that signed the forge's certificate
    admin_user: str
    admin_password: str
    token: str  # an admin API token with all scopes
    token_file: Path  # the same token in a file (mode 0600)
    directory: Path
    pid: int

    def git_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a plain `git` talking to this forge as its admin (tests, the demo):
        the forge's CA, and the token as basic auth in a config header passed through the
        environment (git's GIT_CONFIG_* variables), never in a URL, argv or .git/config."""
        basic = base64.b64encode(f"{self.admin_user}:{self.token}".encode()).decode()
        return {**(os.environ if base is None else base), "GIT_SSL_CAINFO": str(self.ca_file),
                "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}


@dataclass(frozen=True)
class _Layout:
    directory: Path

    @property
    def app_ini(self) -> Path:
        return self.directory / "app.ini"

    @property
    def state(self) -> Path:
        return self.directory / "forge.json"

    @property
    def pki(self) -> _pki.Pki:
        return _pki.Pki(self.directory / "pki")

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def repos(self) -> Path:
        return self.directory / "repos"

    @property
    def tmp(self) -> Path:
        return self.directory / "tmp"

    @property
    def custom(self) -> Path:
        return self.directory / "custom"

    @property
    def log(self) -> Path:
        return self.directory / "log" / "gitea.log"

    @property
    def token_file(self) -> Path:
        return self.directory / "admin.token"

    def owned(self) -> list[Path]:
        """What a new forge starts without (the log stays for a post-mortem)."""
        return [self.app_ini, self.state, self.pki.directory, self.data, self.repos, self.custom, self.tmp,
                self.token_file]


def forge_binaries() -> Path:
    """Build (or reuse) the pinned Gitea; its cache dir (bin/gitea, share/{options,templates,public})."""
    return run_build(repo_root() / "tools" / "gitea" / "build.sh", lambda cache: (
        "" if os.access(cache / "bin" / "gitea", os.X_OK) and (cache / "share" / "options").is_dir()
        else "bin/gitea and share/options"))


# --- configuration --------------------------------------------------------------------------


def _app_ini(layout: _Layout, cache: Path, port: int, secret: dict[str, str]) -> str:
    """Gitea's configuration: HTTPS on loopback, SQLite, no SSH/mail/cron/actions, in-memory
    queues (a push's webhook leaves within a second) and webhooks allowed to loopback."""
    d = layout.directory
    pki = layout.pki
    root_url = f"https://127.0.0.1:{port}/"
    unsafe = "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n" if os.geteuid() == 0 else ""
    return f"""{unsafe}APP_NAME = modelops forge
RUN_MODE = prod
RUN_USER = {getpass.getuser()}
WORK_PATH = {d}

[server]
PROTOCOL = https
DOMAIN = 127.0.0.1
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = {root_url}
CERT_FILE = {pki.cert("server")}
KEY_FILE = {pki.key("server")}
STATIC_ROOT_PATH = {cache / "share"}
APP_DATA_PATH = {layout.data}
APP_TEMP_PATH = {layout.tmp}
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true
GRACEFUL_HAMMER_TIME = 3s

[database]
DB_TYPE = sqlite3
PATH = {layout.data / "gitea.db"}
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = {layout.repos}
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secret["secret_key"]}
INTERNAL_TOKEN = {secret["internal_token"]}
PASSWORD_HASH_ALGO = pbkdf2_hi

[oauth2]
ENABLED = false
JWT_SECRET = {secret["jwt_secret"]}

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 5

[queue]
TYPE = channel

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[mailer]
ENABLED = false

[cron]
ENABLED = false
RUN_AT_START = false

[actions]
ENABLED = false

[packages]
ENABLED = false

[log]
MODE = console
LEVEL = Info
ROOT_PATH = {layout.log.parent}
"""


def _secrets() -> dict[str, str]:
    return {
        "secret_key": secrets.token_hex(32),
        "internal_token": secrets.token_urlsafe(48),
        # Gitea wants 32 bytes in unpadded base64url
        "jwt_secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
    }


def _paths(layout: _Layout) -> list[str]:
    """Config, work and custom path flags: nothing is read from or written to Gitea's defaults."""
    return ["--config", str(layout.app_ini), "--work-path", str(layout.directory),
            "--custom-path", str(layout.custom)]


def _gitea(cache: Path, layout: _Layout, *args: str) -> str:
    """Run one Gitea CLI command on the forge's app.ini (a direct child, reaped, time-bounded)."""
    argv = [str(cache / "bin" / "gitea"), *_paths(layout), *args]
    try:
        result = subprocess.run(argv, cwd=layout.directory, capture_output=True, text=True,
                                timeout=_CLI_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise DevclusterError(f"gitea {args[0]} timed out after {_CLI_TIMEOUT:g}s") from err
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DevclusterError(f"gitea {' '.join(args[:2])} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def _initialize(layout: _Layout, cache: Path, port: int) -> dict[str, Any]:
    """A new forge: certificates, app.ini, database schema and the admin user (no server yet)."""
    for path in layout.owned():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    _pki.create_local_server(layout.pki.directory, "server", "/CN=modelops-forge-ca")
    for path in (layout.data, layout.repos, layout.custom, layout.tmp, layout.log.parent):
        path.mkdir(parents=True, exist_ok=True)
    secret = _secrets()
    layout.app_ini.write_text(_app_ini(layout, cache, port, secret))
    layout.app_ini.chmod(0o600)
    password = secrets.token_urlsafe(18)
    state: dict[str, Any] = {"cache": str(cache), "port": port, "secrets": secret, "admin_user": _ADMIN_USER,
                             "admin_password": password, "process": None, "ready": False}
    save_state(layout.state, _STATE_VERSION, state)
    _gitea(cache, layout, "migrate")
    _gitea(cache, layout, "admin", "user", "create", "--admin", "--username", _ADMIN_USER, "--password", password,
           "--email", _ADMIN_EMAIL, "--must-change-password=false")
    return state


# --- HTTP -----------------------------------------------------------------------------------


def _request(url: str, ca_file: Path, *, method: str = "GET", body: object | None = None,
             basic: tuple[str, str] | None = None, token: str | None = None,
             timeout: float = _HTTP_TIMEOUT) -> Any:
    """One JSON call over HTTPS, verified against the forge's CA; DevclusterError on an HTTP error."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    if token is not None:
        headers["Authorization"] = f"token {token}"
    context = ssl.create_default_context(cafile=str(ca_file))
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:500]
        raise DevclusterError(f"{method} {url}: HTTP {err.code}: {detail}") from None
    return json.loads(raw) if raw.strip() else None


def _answers(root_url: str, ca_file: Path) -> bool:
    try:
        version = _request(root_url + "api/v1/version", ca_file, timeout=3.0)
    except (OSError, DevclusterError, ValueError):
        return False
    return isinstance(version, dict) and "version" in version


def _create_token(root_url: str, ca_file: Path, user: str, password: str) -> str:
    name = f"modelops-agent-{secrets.token_hex(4)}"
    created = _request(f"{root_url}api/v1/users/{user}/tokens", ca_file, method="POST",
                       body={"name": name, "scopes": ["all"]}, basic=(user, password))
    token = created.get("sha1") if isinstance(created, dict) else None
    if not isinstance(token, str) or not token:
        raise DevclusterError(f"Gitea created no token: {created!r}")
    return token


def _write_token(path: Path, token: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


# --- processes ------------------------------------------------------------------------------


def _sweep_group(pgid: int) -> None:
    """SIGKILL what is left of a stopped Gitea's process group (git children it started).

    Only while the group still has members can its id not be handed out again, so every
    process found in it is one Gitea started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def _stop(proc: Proc | None) -> None:
    if proc is None:
        return
    _processes.stop([proc], timeout=10.0)
    _sweep_group(proc.pid)


def _start(layout: _Layout, cache: Path, state: dict[str, Any], deadline: float) -> Proc:
    """Start `gitea web` and wait until its API answers over HTTPS; on failure stop it."""
    root_url = f"https://127.0.0.1:{state['port']}/"
    argv = [str(cache / "bin" / "gitea"), *_paths(layout), "web"]
    layout.tmp.mkdir(exist_ok=True)  # Gitea refuses an APP_TEMP_PATH that is not there
    proc = _processes.spawn("gitea", argv, layout.log, cwd=layout.directory)
    state["process"] = proc.to_json()
    save_state(layout.state, _STATE_VERSION, state)
    try:
        while not _answers(root_url, layout.pki.ca_cert):
            if not _processes.running(proc):
                how = _processes.exit_status(proc) or "exited"
                raise DevclusterError(f"gitea {how} while starting; the end of {layout.log}:\n"
                                      f"{_processes.log_tail(proc)}")
            if time.monotonic() > deadline:
                raise DevclusterError(f"gitea did not answer {root_url}api/v1/version in time; the end of "
                                      f"{layout.log}:\n{_processes.log_tail(proc)}")
            time.sleep(0.2)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _info(layout: _Layout, state: dict[str, Any], proc: Proc, token: str) -> ForgeInfo:
    url = f"https://127.0.0.1:{state['port']}/"
    return ForgeInfo(url=url, api_url=url + "api/v1", ca_file=layout.pki.ca_cert, admin_user=state["admin_user"],
                     admin_password=state["admin_password"], token=token, token_file=layout.token_file,
                     directory=layout.directory, pid=proc.pid)


def _read_token(layout: _Layout) -> str | None:
    try:
        return layout.token_file.read_text().strip() or None
    except OSError:
        return None


def forge_up(directory: Path, timeout: float = 120.0) -> ForgeInfo:
    """Start (or reuse, if it answers) the forge in directory on a free loopback port, HTTPS.

    A stopped forge is started again on its data (same database, repositories, CA and token;
    its port if still free). A forge whose first start never finished is made anew."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    layout = _Layout(directory)
    deadline = time.monotonic() + timeout
    with locked(directory):
        state = load_state(layout.state, _STATE_VERSION)
        proc = proc_of(state) if state is not None else None
        token = _read_token(layout)
        if (state is not None and state.get("ready") and proc is not None and token is not None
                and _processes.running(proc) and _answers(f"https://127.0.0.1:{state['port']}/", layout.pki.ca_cert)):
            return _info(layout, state, proc, token)
        _stop(proc)
        cache = forge_binaries()
        reuse = (state is not None and state.get("initialized") is True and token is not None
                 and layout.pki.ca_cert.is_file() and (layout.data / "gitea.db").is_file())
        for attempt in range(1, _START_ATTEMPTS + 1):
            if reuse and state is not None:
                port = int(state["port"])
                if attempt > 1 or not _processes.ports_free([port]):
                    port = _processes.free_ports(1)[0]
                state.update(port=port, cache=str(cache), ready=False)
                layout.app_ini.write_text(_app_ini(layout, cache, port, state["secrets"]))
            else:
                state = _initialize(layout, cache, _processes.free_ports(1)[0])
            log_size = layout.log.stat().st_size if layout.log.exists() else 0
            try:
                proc = _start(layout, cache, state, deadline)
            except DevclusterError:
                if attempt < _START_ATTEMPTS and port_taken(layout.log, log_size):
                    continue
                raise
            break
        else:
            raise AssertionError("unreachable")
        root_url = f"https://127.0.0.1:{state['port']}/"
        if token is None or not reuse:
            try:
                token = _create_token(root_url, layout.pki.ca_cert, state["admin_user"], state["admin_password"])
            except BaseException:
                _stop(proc)
                raise
            _write_token(layout.token_file, token)
        state.update(ready=True, initialized=True, process=proc.to_json())
        save_state(layout.state, _STATE_VERSION, state)
        return _info(layout, state, proc, token)


def is_forge(directory: Path) -> bool:
    """Does `directory` hold a forge that `forge_up` started (not a cluster)?"""
    return _Layout(directory.resolve()).state.is_file()


def forge_down(directory: Path) -> None:
    """Stop the forge recorded in directory (SIGTERM, then SIGKILL) and reap it; idempotent.

    Its data stays: a later `forge_up` starts the same forge again."""
    directory = directory.resolve()
    if not directory.is_dir():
        return
    layout = _Layout(directory)
    with locked(directory):
        state = load_state(layout.state, _STATE_VERSION)
        if state is None:
            return
        _stop(proc_of(state))
        state["ready"] = False
        save_state(layout.state, _STATE_VERSION, state)


def forge_create_repo(info: ForgeInfo, name: str, *, owner: str | None = None) -> str:
    """Create an empty repository (default branch main) through the API; its HTTPS clone URL.

    Owner defaults to the admin; another owner (user or organization) is created for through
    the admin API."""
    body = {"name": name, "auto_init": False, "default_branch": "main", "private": False}
    if owner is None or owner == info.admin_user:
        path = "/user/repos"
    else:
        path = f"/admin/users/{urllib.parse.quote(owner, safe='')}/repos"
    created = _request(info.api_url + path, info.ca_file, method="POST", body=body, token=info.token)
    url = created.get("clone_url") if isinstance(created, dict) else None
    if not isinstance(url, str) or not url:
        raise DevclusterError(f"Gitea created no repository {name!r}: {created!r}")
    return url
