"""Make live objects comparable with desired ones: drop what the server owns or adds
(managedFields, resourceVersion, status, ...) and read field ownership from managedFields."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_META_DROP = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds")
_ANNOTATION_DROP = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")


def normalize(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _META_DROP}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _ANNOTATION_DROP}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def manager_entries(obj: dict[str, Any], manager: str) -> list[dict[str, Any]]:
    return [m for m in (obj.get("metadata") or {}).get("managedFields") or []
            if m.get("manager") == manager and m.get("operation") == "Apply" and not m.get("subresource")]


def owned_fields_hash(obj: dict[str, Any], manager: str) -> str:
    """Hash of what `manager` owns by apply; it changes whenever someone takes a field from us."""
    fields = [m.get("fieldsV1") for m in manager_entries(obj, manager)]
    # the API server serializes fieldsV1 with sorted keys, so its order is already canonical
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()[:16]


def _flatten(fields: Any, prefix: str, out: set[str]) -> None:
    if not isinstance(fields, dict):
        return
    for key, sub in fields.items():
        if key == ".":
            out.add(prefix)
            continue
        # f:name is a field; k:{...} (list item key) and v:value (set member) stay at the list
        path = (f"{prefix}.{key[2:]}" if prefix else key[2:]) if key.startswith("f:") else prefix
        if not sub:
            out.add(path)
        _flatten(sub, path, out)


_INDEX = re.compile(r"\[\d+\]")


def field_owners(obj: dict[str, Any], path: str, exclude: str) -> list[str]:
    """Managers other than `exclude` that own `path` (list indices ignored) or a part of it."""
    wanted = _INDEX.sub("", path)
    owners = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        manager = str(entry.get("manager", ""))
        if manager == exclude or entry.get("subresource"):
            continue
        paths: set[str] = set()
        _flatten(entry.get("fieldsV1"), "", paths)
        if any(p == wanted or p.startswith(wanted + ".") or (wanted.startswith(p + ".") and p) for p in paths):
            owners.append(manager)
    return sorted(set(owners))
