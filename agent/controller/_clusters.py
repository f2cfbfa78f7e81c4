"""A fleet's clusters, by name: the contexts of a kubeconfig (re-read when the file changes), or,
in-cluster, Secrets labelled `modelops.dev/cluster=true` in the agent's namespace whose
`data.kubeconfig` (or Flux's `data.value`) holds a kubeconfig (the Argo CD/Flux convention; the
name is the Secret's, or its `modelops.dev/cluster-name` annotation).

`current()` returns {name: Connection}; the fleet calls it on its own thread (a file read, or
one LIST of the agent's own API server: never a member's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.cluster import Cluster, ClusterError
from agent.errors import AgentError

log = logging.getLogger("modelops.fleet")

CLUSTER_LABEL = "modelops.dev/cluster"
NAME_ANNOTATION = "modelops.dev/cluster-name"


@dataclass(frozen=True)
class Connection:
    """How a member connects: a kubeconfig file and its context (None: its current one).
    `version` changes when the credentials do (the member is restarted then)."""

    kubeconfig: str
    context: str | None
    version: str = ""


def kubeconfig_path(kubeconfig: str | None) -> str:
    """The one kubeconfig file a fleet reads its contexts from (as kubectl finds it)."""
    if kubeconfig:
        return kubeconfig
    env = [f for f in os.environ.get("KUBECONFIG", "").split(os.pathsep) if f]
    if len(env) > 1:
        raise AgentError("a fleet reads its clusters from one kubeconfig file: KUBECONFIG names several "
                         "(pass --kubeconfig)")
    return env[0] if env else os.path.expanduser("~/.kube/config")


def contexts_of(text: str, where: str) -> dict[str, str]:
    """The contexts of a kubeconfig's text, each with a version (a digest of the context, its
    cluster and its user entries: an edit of another context does not change it); AgentError
    naming `where` when it is not a kubeconfig."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise AgentError(f"{where}: not a kubeconfig (expected a mapping)")
    contexts = data.get("contexts") or []
    if not isinstance(contexts, list):
        raise AgentError(f"{where}: contexts: expected a list")
    named = {kind: {e.get("name"): e for e in data.get(kind) or [] if isinstance(e, dict)}
             for kind in ("clusters", "users")}
    found: dict[str, str] = {}
    for i, entry in enumerate(contexts):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise AgentError(f"{where}: contexts[{i}].name: expected a non-empty string")
        context = entry.get("context") if isinstance(entry.get("context"), dict) else {}
        parts = [entry, named["clusters"].get(context.get("cluster")), named["users"].get(context.get("user"))]
        found[name] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return found


class KubeconfigClusters:
    """The contexts of one kubeconfig file, read again when its modification time or size changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._current: dict[str, Connection] = {}
        self.error = ""

    def close(self) -> None:
        """Nothing to release: the file is read when asked."""

    def current(self) -> dict[str, Connection]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.error = f"kubeconfig {self.path}: {exc.strerror}"
            return self._current
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._current
        try:
            names = contexts_of(Path(self.path).read_text(encoding="utf-8"), f"kubeconfig {self.path}")
        except (OSError, UnicodeDecodeError) as exc:
            self.error = f"kubeconfig {self.path}: {exc}"
            return self._current
        except AgentError as exc:
            self.error = str(exc)
            return self._current
        self._stamp, self.error = stamp, ""
        self._current = {name: Connection(self.path, name, version) for name, version in names.items()}
        return self._current


class SecretClusters:
    """Clusters from labelled Secrets of `namespace` in the agent's own cluster; each kubeconfig
    is written (0600) under `directory`, which only this process reads."""

    def __init__(self, cluster: Cluster, namespace: str, directory: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.directory = directory
        self._current: dict[str, Connection] = {}
        self.error = ""

    def close(self) -> None:
        """Release the home cluster's client (the fleet stops)."""
        self.cluster.close()

    def current(self) -> dict[str, Connection]:
        try:
            listed = self.cluster.request("GET", f"/api/v1/namespaces/{self.namespace}/secrets",
                                          query={"labelSelector": f"{CLUSTER_LABEL}=true"}, retries=0)
        except (ClusterError, AgentError) as exc:
            self.error = f"listing the cluster Secrets of {self.namespace}: {exc}"
            return self._current
        found: dict[str, Connection] = {}
        problems = []
        for item in (listed or {}).get("items") or []:
            try:
                name, conn = self._one(item)
            except AgentError as exc:
                problems.append(str(exc))
                continue
            found[name] = conn
        self.error = "; ".join(problems)
        self._current = found
        return found

    def _one(self, item: dict[str, Any]) -> tuple[str, Connection]:
        meta = item.get("metadata") or {}
        secret = str(meta.get("name", ""))
        name = str((meta.get("annotations") or {}).get(NAME_ANNOTATION) or secret)
        data = item.get("data") or {}
        raw = data.get("kubeconfig") or data.get("value")
        where = f"Secret {self.namespace}/{secret}"
        if not isinstance(raw, str):
            raise AgentError(f"{where}: data.kubeconfig (or data.value) is missing")
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AgentError(f"{where}: data.kubeconfig is not base64 of UTF-8 text") from None
        contexts_of(text, where)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{secret}.kubeconfig"
        version = str(meta.get("resourceVersion", ""))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
        return name, Connection(str(path), None, version)
