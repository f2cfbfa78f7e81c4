"""kubeconfig files with the certificates embedded, so they work when copied elsewhere.

One context per file for a cluster's own users (`write`), or one file with a context per
cluster, named by the caller, as a kubectl user keeps several clusters (`write_contexts`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from devenv.cluster._errors import DevclusterError

CONTEXT = "devcluster"
# What kubectl users name contexts and what the agent's cluster names allow (no spaces, no
# slashes, no YAML-special leading characters): checked, not quoted around.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Credentials:
    """How one client-certificate user reaches one API server."""

    server: str
    ca: Path
    cert: Path
    key: Path
    user: str


class AdminAccess(Protocol):
    """What a merged kubeconfig needs of a cluster (devenv.cluster.ClusterInfo has it)."""

    @property
    def server(self) -> str: ...
    @property
    def ca_file(self) -> Path: ...
    @property
    def client_cert(self) -> Path: ...
    @property
    def client_key(self) -> Path: ...


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _save(path: Path, config: dict[str, Any]) -> Path:
    """Atomically (a reader never sees half a file), mode 0600 (it holds private keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    tmp.replace(path)
    return path


def write_contexts(path: Path, contexts: Mapping[str, Credentials], current: str | None = None) -> Path:
    """Write a kubeconfig with one context per entry (its cluster and user named after it, so
    no two entries share one), the current context `current` or else the first."""
    if not contexts:
        raise DevclusterError(f"{path}: a kubeconfig needs at least one context")
    for name in contexts:
        if not _NAME.fullmatch(name):
            raise DevclusterError(f"{path}: context name \"{name}\" is not 1-63 letters, digits, '.', '_' "
                                  "or '-' starting with a letter or digit")
    current = next(iter(contexts)) if current is None else current
    if current not in contexts:
        raise DevclusterError(f"{path}: the current context {current} is not one of {', '.join(contexts)}")
    # a one-context file keeps its user's own name; in a merged one each context has its user
    users = {name: c.user if len(contexts) == 1 else f"{name}-{c.user}" for name, c in contexts.items()}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": c.server, "certificate-authority-data": _b64(c.ca)}}
            for name, c in contexts.items()
        ],
        "users": [
            {"name": users[name],
             "user": {"client-certificate-data": _b64(c.cert), "client-key-data": _b64(c.key)}}
            for name, c in contexts.items()
        ],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": users[name]}} for name in contexts
        ],
        "current-context": current,
        "preferences": {},
    }
    return _save(path, config)


def write(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    """Write a one-context kubeconfig (mode 0600) for a client-certificate user."""
    return write_contexts(path, {CONTEXT: Credentials(server, ca, cert, key, user)})


def write_kubeconfig(path: Path, clusters: Mapping[str, AdminAccess], current: str | None = None) -> Path:
    """One kubeconfig (mode 0600, written atomically) with a context per running dev cluster,
    named by the mapping's keys, each as that cluster's admin; current context the first."""
    return write_contexts(path, {
        name: Credentials(info.server, info.ca_file, info.client_cert, info.client_key, "admin")
        for name, info in clusters.items()
    }, current)
