"""A local MLflow tracking server with its Model Registry: the real thing the agent's registry
client (agent.registry) resolves model references against in tests and the demo.

MLflow runs from its own virtualenv (tools/mlflow/setup.sh): the agent never imports it. Like
the forge and Prometheus, everything a server owns (SQLite database, artifacts, log, state file)
is under its directory, its port is picked free, and it is started detached and identified by
pid and start time (devenv.cluster._processes). Unlike them it is a process *group*: `mlflow
server` runs uvicorn as a child (one worker here). The job runner (huey consumers, seven
processes, for server-side jobs the registry does not need) is switched off with
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, set by a launcher in the server's own interpreter so
the environment of the calling process is left alone. `mlflow_down` stops the whole group
(SIGTERM, then SIGKILL), waits until every member is gone and checks /proc that no process
naming the directory is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.cluster import _processes
from devenv.cluster._build import repo_root
from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc
from devenv.cluster._server import load_state, locked, port_taken, proc_of, run_build, save_state

__all__ = ["MlflowInfo", "mlflow_binaries", "mlflow_down", "mlflow_up"]

_STATE_VERSION = 1
_START_ATTEMPTS = 3
_STOP_TIMEOUT = 10.0
_KILL_TIMEOUT = 5.0
# Runs `mlflow server` in the venv's interpreter with the job runner off: argv[0] stays the
# venv's python (what _processes checks a pid against), and no environment is mutated here.
_LAUNCHER = ("import os, sys; os.environ['MLFLOW_SERVER_ENABLE_JOB_EXECUTION'] = 'false'; "
             "from mlflow.cli import cli; cli.main(args=sys.argv[1:], prog_name='mlflow')")


@dataclass(frozen=True)
class MlflowInfo:
    """How to reach a running MLflow tracking server (no auth)."""

    url: str  # "http://127.0.0.1:PORT", the tracking URI
    directory: Path
    pid: int


@dataclass(frozen=True)
class _Layout:
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / "mlflow.json"

    @property
    def database(self) -> Path:
        return self.directory / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.directory / "artifacts"

    @property
    def log(self) -> Path:
        return self.directory / "log" / "mlflow.log"


def mlflow_binaries() -> Path:
    """Install (or reuse) the pinned MLflow; its virtualenv (bin/python, bin/mlflow)."""
    return run_build(repo_root() / "tools" / "mlflow" / "setup.sh", lambda venv: (
        "" if all(os.access(venv / "bin" / b, os.X_OK) for b in ("python", "mlflow")) else "bin/python and bin/mlflow"))


# --- the process group ----------------------------------------------------------------------


def _group(proc: Proc) -> list[int]:
    """Live (not zombie) members of the server's process group that are the server's: started
    no earlier than it, by the same interpreter. The group id is the leader's pid; checking the
    members' start time and executable keeps a reused id from ever naming a stranger."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if (int(fields[2]) == proc.pid and fields[0] not in ("Z", "X") and int(fields[19]) >= proc.start_ticks
                and argv0 == proc.exe):
            members.append(int(entry.name))
    return members


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    for pid in _group(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _processes.running(proc)  # reaps the leader once it exits, if it is our child
        if not _group(proc):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _stop(proc: Proc | None) -> None:
    """SIGTERM the whole group (uvicorn stops its worker, `mlflow server` follows), then
    SIGKILL what is left; returns once no member is alive and the leader is reaped."""
    if proc is None:
        return
    _signal_group(proc, signal.SIGTERM)
    if _wait_gone(proc, _STOP_TIMEOUT):
        return
    _signal_group(proc, signal.SIGKILL)
    if not _wait_gone(proc, _KILL_TIMEOUT):
        raise DevclusterError(f"mlflow server (group {proc.pid}) survived SIGKILL: {_group(proc)}")


def _leftovers(directory: Path) -> list[int]:
    """Pids of live processes whose command line or environment names directory (the server
    and its uvicorn carry the database path in MLFLOW_TRACKING_URI)."""
    needle = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text()
            state = state[state.rindex(")") + 2 :].split()[0]
            if state in ("Z", "X"):
                continue
            blobs = [(entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()]
        except OSError:
            continue
        if any(needle in blob for blob in blobs):
            found.append(int(entry.name))
    return found


# --- HTTP -----------------------------------------------------------------------------------


def _answers(url: str) -> bool:
    """Does the REST API answer (and its database with it)?"""
    try:
        with urllib.request.urlopen(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=2.0) as resp:
            resp.read()
            return int(resp.status) == 200
    except (OSError, ValueError):
        return False


# --- up/down --------------------------------------------------------------------------------


def _start(layout: _Layout, venv: Path, state: dict[str, Any], deadline: float) -> Proc:
    """Start the server and wait until its REST API answers; on failure stop it."""
    port = state["port"]
    argv = [
        str(venv / "bin" / "python"), "-c", _LAUNCHER, "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{layout.database}",
        "--serve-artifacts",
        "--artifacts-destination", str(layout.artifacts),
    ]
    proc = _processes.spawn("mlflow", argv, layout.log, cwd=layout.directory)
    state["process"] = proc.to_json()
    save_state(layout.state, _STATE_VERSION, state)
    url = f"http://127.0.0.1:{port}"
    try:
        while not _answers(url):
            # Our own child: it has exited only once its exit status is known (a /proc check
            # alone once misjudged a live server here as gone, with nothing in its log).
            if not _processes.running(proc) and (how := _processes.exit_status(proc)):
                raise DevclusterError(f"mlflow server {how} while starting; the end of {layout.log}:\n"
                                      f"{_processes.log_tail(proc)}")
            if time.monotonic() > deadline:
                raise DevclusterError(f"mlflow server did not answer {url}/api/2.0/mlflow/experiments/search "
                                      f"in time; the end of {layout.log}:\n{_processes.log_tail(proc)}")
            time.sleep(0.1)
    except BaseException:
        _stop(proc)
        raise
    return proc


def mlflow_up(directory: Path, timeout: float = 120.0) -> MlflowInfo:
    """Start an MLflow tracking server (REST API, Model Registry, proxied artifacts) in directory
    on a free loopback port; returns once its REST API answers (~10 s here: uvicorn imports
    MLflow). Its SQLite database and artifacts stay in directory: a server already running
    there is stopped first and the new one starts on the same data."""
    venv = mlflow_binaries()
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    layout = _Layout(directory)
    deadline = time.monotonic() + timeout
    with locked(directory):
        _stop(proc_of(load_state(layout.state, _STATE_VERSION)))
        layout.artifacts.mkdir(exist_ok=True)
        layout.log.parent.mkdir(exist_ok=True)
        state: dict[str, Any] = {"venv": str(venv), "port": 0, "process": None, "ready": False}
        for attempt in range(1, _START_ATTEMPTS + 1):
            state["port"] = _processes.free_ports(1)[0]
            log_size = layout.log.stat().st_size if layout.log.exists() else 0
            try:
                proc = _start(layout, venv, state, deadline)
            except DevclusterError:
                if attempt < _START_ATTEMPTS and port_taken(layout.log, log_size):
                    continue
                raise
            break
        else:
            raise AssertionError("unreachable")
        state.update(ready=True, process=proc.to_json())
        save_state(layout.state, _STATE_VERSION, state)
        return MlflowInfo(url=f"http://127.0.0.1:{state['port']}", directory=directory, pid=proc.pid)


def mlflow_down(directory: Path) -> None:
    """Stop the MLflow server recorded in directory and every process it started (SIGTERM, then
    SIGKILL), reap it, and check that no process naming directory is left; idempotent. The
    database, artifacts and log stay."""
    directory = directory.resolve()
    if not directory.is_dir():
        return
    layout = _Layout(directory)
    with locked(directory):
        state = load_state(layout.state, _STATE_VERSION)
        proc = proc_of(state)
        if state is None or proc is None:
            return
        _stop(proc)
        state["ready"] = False
        save_state(layout.state, _STATE_VERSION, state)
        left = _leftovers(directory)
        if left:
            raise DevclusterError(f"processes naming {directory} are still running after mlflow_down: {left}")
