"""Ownership labels, annotations and the rendered-spec hash every object carries.

Later stages rely on these: the LIST label selector, the inventory, the model-level summary
and the no-op fast path (a live object whose spec-hash equals ours needs no dry-run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from agent.spec import Model, ModelVersion, group_of

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
# where a registry version came from: "<the reference's shorthand>=<the immutable version>",
# e.g. "mlflow fraud-scorer@champion=13" (see docs/registries.md)
STABLE_REGISTRY_ANNOTATION = "modelops.dev/stable-registry"
CANARY_REGISTRY_ANNOTATION = "modelops.dev/canary-registry"


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


@dataclass(frozen=True)
class RegistryProvenance:
    """A `*-registry` annotation read back: `reference` is the registry's shorthand (the
    identity of the reference: "mlflow fraud-scorer@champion"), `selector`/`value` what it asks
    for ("alias"/"champion", "stage"/"prod", "version"/"13"), `version` what it resolved to."""

    reference: str
    selector: str
    value: str
    version: str


def registry_annotation(version: ModelVersion) -> str | None:
    """The `*-registry` annotation of a resolved registry version; None for a version by URI
    (or one not resolved), so repos without registries render as before."""
    if version.registry is None or version.resolved is None:
        return None
    return f"{version.registry}={version.resolved}"


def registry_annotations(model: Model, canary: str | None) -> dict[str, str]:
    """The stable's and the canary's `*-registry` annotations, for the model's primary objects."""
    out: dict[str, str] = {}
    for key, name in ((STABLE_REGISTRY_ANNOTATION, model.stable), (CANARY_REGISTRY_ANNOTATION, canary)):
        entry = model.versions.get(name) if name is not None else None
        text = registry_annotation(entry) if entry is not None else None
        if text is not None:
            out[key] = text
    return out


# the selector separator of each registry's shorthand (agent.spec.RegistryRef.__str__)
_SEPARATORS = {"mlflow": {"@": "alias", "/": "version"}, "gto": {"#": "stage", "@": "version"}}


def parse_registry_annotation(text: str | None) -> RegistryProvenance | None:
    """The annotation `registry_annotation` wrote, or None when absent or malformed (a live
    object of an older agent, a hand edit). The version never holds "=" and the alias, stage
    or version never "@", "/" or "#", so the last of each splits even a name holding them."""
    if not text:
        return None
    reference, sep, version = text.rpartition("=")
    kind, _, rest = reference.partition(" ")
    separators = _SEPARATORS.get(kind)
    if not sep or not version or separators is None:
        return None
    if kind == "gto":
        rest = rest.split(" ", 1)[0]  # a GTO name has no space: drop " (repo R)"
    at = max(rest.rfind(s) for s in separators)
    if at <= 0 or at == len(rest) - 1:
        return None
    return RegistryProvenance(reference=reference, selector=separators[rest[at]], value=rest[at + 1:],
                              version=version)


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
