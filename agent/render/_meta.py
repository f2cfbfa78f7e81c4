"""Ownership labels, annotations and the rendered-spec hash every object carries.

Later stages rely on these: the LIST label selector, the inventory, the model-level summary
and the no-op fast path (a live object whose spec-hash equals ours needs no dry-run).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent.spec import group_of

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelops-agent"
TARGET_LABEL = "modelops.dev/target"
MODEL_LABEL = "modelops.dev/model"
VERSION_LABEL = "modelops.dev/version"
TRACK_LABEL = "modelops.dev/track"
MONITOR_LABEL = "modelops.dev/monitor"
STAGE_LABEL = "modelops.dev/stage"
OWNER_ANNOTATION = "modelops.dev/owner"

SPEC_HASH_ANNOTATION = "modelops.dev/spec-hash"
SOURCE_ANNOTATION = "modelops.dev/source"
STABLE_ANNOTATION = "modelops.dev/stable-version"
CANARY_ANNOTATION = "modelops.dev/canary-version"
TRAFFIC_ANNOTATION = "modelops.dev/canary-traffic"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def spec_hash(obj: dict[str, Any]) -> str:
    """Hash of an object as rendered, excluding the hash annotation itself."""
    meta = dict(obj.get("metadata", {}))
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != SPEC_HASH_ANNOTATION}
    meta["annotations"] = annotations
    return hashlib.sha256(canonical_json({**obj, "metadata": meta})).hexdigest()[:16]


def finish(
    obj: dict[str, Any],
    *,
    target: str,
    source: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Stamp ownership labels, provenance and the spec hash onto a rendered object."""
    meta = obj.setdefault("metadata", {})
    meta["labels"] = {
        **meta.get("labels", {}),
        **(labels or {}),
        MANAGED_BY_LABEL: MANAGED_BY,
        TARGET_LABEL: target,
    }
    meta["annotations"] = {**meta.get("annotations", {}), **(annotations or {}), SOURCE_ANNOTATION: source}
    meta["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(obj)
    return obj


ObjectKey = tuple[str, str, str, str]  # group, kind, namespace, name


def object_key(obj: dict[str, Any]) -> ObjectKey:
    """(group, kind, namespace, name): identity of an object across API versions."""
    api = str(obj.get("apiVersion", ""))
    group = group_of(api)
    meta = obj.get("metadata", {})
    return (group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def ref(obj: dict[str, Any]) -> str:
    """Human form of an object's identity: Kind/namespace/name (namespace omitted when none)."""
    _group, kind, ns, name = object_key(obj)
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"
