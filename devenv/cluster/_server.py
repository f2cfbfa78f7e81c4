"""What every local server of the environment shares (the control plane, Gitea, Prometheus,
MLflow): one up/down at a time per directory, a versioned state file written atomically, the
recorded process, the "port taken while starting" check, and the cached build script.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One up/reload/down at a time per directory."""
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_state(path: Path, version: int) -> dict[str, Any] | None:
    """The state file, or None when there is none (or one of another format version)."""
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != version:
        return None
    return raw


def save_state(path: Path, version: int, state: dict[str, Any]) -> None:
    """Atomically, mode 0600 (a forge's state holds its admin password)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({**state, "version": version}, indent=2) + "\n")
    os.replace(tmp, path)


def proc_of(state: dict[str, Any] | None) -> Proc | None:
    """The server process a state file records, if it records a well-formed one."""
    raw = state.get("process") if state is not None else None
    try:
        return Proc.from_json(raw) if isinstance(raw, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def port_taken(log: Path, since: int) -> bool:
    """Did the last start fail because another process bound the port first (its log past
    offset `since` says so)?"""
    try:
        with log.open("rb") as f:
            f.seek(since)
            return b"address already in use" in f.read()
    except OSError:
        return False


def run_build(script: Path, missing: Callable[[Path], str]) -> Path:
    """Run a cached build script of tools/ (build progress to the caller's stderr; stdout ends
    with the cache directory) and return that directory; `missing(dir)` names what the build
    should have left there and did not ("" when all is there)."""
    if not script.is_file():
        raise DevclusterError(f"{script} not found; set AGENT_REPO_ROOT to the agent checkout")
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise DevclusterError(f"{script} failed with exit code {result.returncode}")
    cache = Path(lines[-1])
    absent = missing(cache)
    if absent:
        raise DevclusterError(f"{script} left no {absent} in {cache}")
    return cache
