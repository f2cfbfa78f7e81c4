"""The inventory: a ConfigMap per target listing every object the agent applied.

Pruning reads it instead of scanning every kind, and deletes nothing that is not in it. It
also anchors the audit log (latest seq/hash) and records the last apply for `agent status`.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from dataclasses import dataclass, field
from typing import Any

from agent.cluster._client import Cluster
from agent.cluster._kinds import well_known
from agent.render import ObjectKey
from agent.spec import group_of

INVENTORY_NAMESPACE = "modelops-system"
AUDIT_SEQ = "modelops.dev/audit-seq"
AUDIT_HASH = "modelops.dev/audit-hash"
LAST_APPLY = "modelops.dev/last-apply"
LAST_INVALID = "modelops.dev/last-invalid"  # the controller's newest invalid commit, until a good one applies
# the last pass that found the cluster as the commit says (or made it so): {commit, time, by, source}
LAST_SYNC = "modelops.dev/last-sync"

_COMPRESS_OVER = 256 * 1024


def sync_mark(commit: str, by: str, source: str = "", when: float | None = None) -> str:
    """The LAST_SYNC annotation's value: which commit was in force, when, who checked
    (`controller`, `agent apply`) and what the controller follows (a URL without credentials
    and its branch)."""
    at = time.gmtime(time.time() if when is None else when)
    mark = {"commit": commit, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", at), "by": by}
    if source:
        mark["source"] = source
    return json.dumps(mark, sort_keys=True)


@dataclass(frozen=True)
class Entry:
    api_version: str
    kind: str
    namespace: str
    name: str
    fields: str = ""  # hash of the fields our field manager owned after our last apply

    @property
    def key(self) -> ObjectKey:
        return (group_of(self.api_version), self.kind, self.namespace, self.name)

    def as_list(self) -> list[str]:
        return [self.api_version, self.kind, self.namespace, self.name, self.fields]


@dataclass
class Inventory:
    target: str
    namespace: str = INVENTORY_NAMESPACE
    entries: dict[ObjectKey, Entry] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None

    @property
    def name(self) -> str:
        return f"modelops-inventory-{self.target}"

    def to_configmap(self) -> dict[str, Any]:
        objects = sorted((e.as_list() for e in self.entries.values()), key=lambda x: (x[1], x[2], x[3], x[0]))
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/part-of": "modelops-agent", "modelops.dev/inventory": self.target},
            "annotations": dict(sorted(self.annotations.items())),
        }
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        text = json.dumps(objects, separators=(",", ":"))
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
        if len(text) > _COMPRESS_OVER:  # a ConfigMap holds at most 1 MiB: ~10,000 entries uncompressed
            body["binaryData"] = {"objects.json.gz": base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()}
        else:
            body["data"] = {"objects": text}
        return body

    @classmethod
    def from_configmap(cls, target: str, cm: dict[str, Any]) -> Inventory:
        meta = cm.get("metadata", {})
        inv = cls(target=target, namespace=str(meta.get("namespace", INVENTORY_NAMESPACE)),
                  annotations=dict(meta.get("annotations") or {}), resource_version=meta.get("resourceVersion"))
        packed = (cm.get("binaryData") or {}).get("objects.json.gz")
        text = gzip.decompress(base64.b64decode(packed)).decode() if packed else (cm.get("data") or {}).get("objects", "[]")
        for row in json.loads(text):
            entry = Entry(*row)
            inv.entries[entry.key] = entry
        return inv

    def content(self) -> tuple[Any, ...]:
        return (tuple(sorted(e.as_list() for e in self.entries.values())), tuple(sorted(self.annotations.items())))


_CM = well_known("v1", "ConfigMap")
assert _CM is not None


def load_inventory(cluster: Cluster, target: str, namespace: str = INVENTORY_NAMESPACE) -> Inventory:
    assert _CM is not None
    cm = cluster.get(_CM, Inventory(target=target).name, namespace)
    return Inventory(target=target, namespace=namespace) if cm is None else Inventory.from_configmap(target, cm)


def save_inventory(cluster: Cluster, inv: Inventory) -> None:
    """Create or replace (optimistic concurrency through resourceVersion)."""
    assert _CM is not None
    body = inv.to_configmap()
    if inv.resource_version is None:
        created = cluster.create(_CM, body, inv.namespace, make_namespace=True)
        inv.resource_version = created["metadata"]["resourceVersion"]
    else:
        replaced = cluster.replace(_CM, body)
        inv.resource_version = replaced["metadata"]["resourceVersion"]
