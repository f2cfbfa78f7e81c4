"""Spec -> desired Kubernetes objects. Pure and deterministic: same Spec, same bytes."""

from __future__ import annotations

import base64
from typing import Any

from agent.errors import SpecError, ValidationFailed
from agent.render._kserve import TAG_ROUTING_ANNOTATION, inference_service, serving_runtime
from agent.render._kubernetes import PREVIEW_SUFFIX, is_blue_green, split, workload_objects
from agent.render._meta import (
    CANARY_ANNOTATION,
    CANARY_REGISTRY_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    OWNER_ANNOTATION,
    SOURCE_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    STABLE_ANNOTATION,
    STABLE_REGISTRY_ANNOTATION,
    STAGE_LABEL,
    TARGET_LABEL,
    TRACK_LABEL,
    TRAFFIC_ANNOTATION,
    VERSION_LABEL,
    ObjectKey,
    RegistryProvenance,
    canonical_json,
    finish,
    object_key,
    parse_registry_annotation,
    ref,
    spec_hash,
)
from agent.render._monitor import expression, prometheus_rule, scrape_config
from agent.render._order import in_apply_order, phase
from agent.spec import Location, Model, Spec

__all__ = [
    "CANARY_ANNOTATION", "CANARY_REGISTRY_ANNOTATION", "MANAGED_BY", "MANAGED_BY_LABEL", "MODEL_LABEL",
    "PREVIEW_SUFFIX", "SOURCE_ANNOTATION", "SPEC_HASH_ANNOTATION", "STABLE_ANNOTATION", "STABLE_REGISTRY_ANNOTATION",
    "TAG_ROUTING_ANNOTATION", "TARGET_LABEL", "TRACK_LABEL", "TRAFFIC_ANNOTATION", "VERSION_LABEL", "ObjectKey",
    "RegistryProvenance", "canonical_json", "expression", "in_apply_order", "is_blue_green", "object_key",
    "parse_registry_annotation", "phase", "ref", "render", "secret_data", "spec_hash", "split",
]


def render(spec: Spec) -> list[dict[str, Any]]:
    """Every object the repo wants in the cluster, in apply order (then by identity).

    Two declarations that render to the same object are a validation error naming both.
    """
    target = spec.config.name
    runtimes = {r.name: r for r in spec.runtimes}
    rendered: list[tuple[dict[str, Any], Location]] = []

    def add(obj: dict[str, Any], loc: Location, **extra: Any) -> None:
        rendered.append((finish(obj, target=target, source=loc.file, **extra), loc))

    kserve_runtimes: dict[tuple[str, str], set[str]] = {}
    monitored = {m.model_key for m in spec.monitors}
    for model in spec.models:
        runtime = runtimes.get(model.runtime) if model.runtime else None
        if model.backend == "kserve":
            add(inference_service(model, runtime, spec.config.default_resources), model.location, **ownership(model))
            if runtime is not None:
                kserve_runtimes.setdefault((runtime.name, model.namespace), set()).add(model.format)
        else:
            assert runtime is not None, "validated: the kubernetes backend has a runtime"
            for obj in workload_objects(model, runtime, spec.config.default_resources):
                add(obj, model.location, **ownership(model))
        if model.key in monitored:
            add(scrape_config(model, runtime), model.location, **ownership(model))
    for (name, namespace), formats in sorted(kserve_runtimes.items()):
        runtime = runtimes[name]
        add(serving_runtime(runtime, namespace, sorted(formats)), runtime.location)
    for monitor in spec.monitors:
        add(prometheus_rule(monitor, spec.config.metrics), monitor.location)
    for manifest in spec.manifests:
        body = _copy(manifest.body)
        add(secret_data(body), manifest.location)

    seen: dict[ObjectKey, Location] = {}
    errors = []
    for obj, loc in rendered:
        key = object_key(obj)
        if key in seen:
            first = seen[key]
            errors.append(SpecError(loc.file, loc.line, "metadata.name",
                                    f"renders {ref(obj)}, which {first.file}:{first.line} also renders"))
        else:
            seen[key] = loc
    if errors:
        raise ValidationFailed(errors, target=spec.config.name)
    return in_apply_order([obj for obj, _ in rendered])


def ownership(model: Model) -> dict[str, dict[str, str]]:
    """Stage label and owner annotation on a model's objects (not on its pods: changing the
    owner must not roll the model out again)."""
    annotations = {OWNER_ANNOTATION: model.owner} if model.owner else {}
    return {"labels": {STAGE_LABEL: model.stage}, "annotations": annotations}


def secret_data(obj: dict[str, Any]) -> dict[str, Any]:
    """A v1 Secret with its `stringData` folded into `data` (base64 of the UTF-8 value; on the
    same key stringData wins, as the API server merges them); other objects unchanged.

    The API server never stores stringData, but server-side apply records the applier as the
    owner of `f:stringData`, so a foreign write to a value would not take any field from us
    and the drift would go unseen. Applied as `data`, we own `f:data.<key>`, and a write by
    anyone else to that key moves it to them. A stringData that is not a mapping of strings
    is left as written for the API server to reject.
    """
    if obj.get("apiVersion") != "v1" or obj.get("kind") != "Secret" or "stringData" not in obj:
        return obj
    strings, data = obj["stringData"], obj.get("data") or {}
    if not isinstance(strings, dict) or not isinstance(data, dict):
        return obj
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in strings.items()):
        return obj
    merged = {**data, **{k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in strings.items()}}
    out = {k: v for k, v in obj.items() if k != "stringData"}
    if merged or "data" in obj:
        out["data"] = dict(sorted(merged.items()))
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
