"""Rendered desired state cached per git tree, like Argo CD's manifest cache.

A commit's tree id names its content, so the validated Spec and rendered objects of a tree
never change, for one version of the agent and its schemas. `agent diff`, `apply` and
`status` run as short processes, and loading a large repo costs far more than the rest of a
no-op reconcile: they read the tree id (one git call) and reuse the last result.

Entries live under $AGENT_CACHE_DIR (default ~/.cache/modelops-agent/desired), are written
atomically, and only for a repo that validated. A corrupt or foreign entry is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from agent._version import __version__
from agent.spec import schemas_dir

_KEEP = 16  # entries kept; older ones are removed


def cache_root() -> Path:
    """The agent's cache directory: $AGENT_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/modelops-agent."""
    return Path(os.environ.get("AGENT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelops-agent"))


def _root() -> Path:
    return cache_root() / "desired"


@cache
def _code_key() -> str:
    """Changes whenever the agent's code or schemas change (so a dev checkout never reuses a
    result rendered by other code)."""
    digest = hashlib.sha256(__version__.encode())
    for directory in (Path(__file__).resolve().parents[1], schemas_dir()):
        for path in sorted(directory.rglob("*")):
            if path.suffix in (".py", ".json") and path.is_file():
                digest.update(path.relative_to(directory).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _path(tree_id: str) -> Path:
    return _root() / f"{tree_id}-{_code_key()}.pickle"


def get(tree_id: str) -> Any | None:
    path = _path(tree_id)
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError):
        return None


def put(tree_id: str, value: Any) -> None:
    root = _root()
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, _path(tree_id))
        entries = sorted(root.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[_KEEP:]:
            old.unlink(missing_ok=True)
