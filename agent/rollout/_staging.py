"""Staging a new KServe model's canary behind its stable version (#11).

KServe gives the first revision of an InferenceService all the traffic, whatever
`canaryTrafficPercent` says, and the spec always carries the newest artifact: a model created
with a canary would serve the canary at 100% and never run its stable version. So a KServe
model with a canary is rendered without it (stable at 100%) until its InferenceService exists
with a Ready revision of the stable version; only then does the canary join as a second
revision that `canaryTrafficPercent` really splits.

Pure: the caller reads the live InferenceServices and renders `without_canary(...)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from agent.render import VERSION_LABEL
from agent.spec import Model, Spec


def staged(models: Sequence[Model], live: Mapping[tuple[str, str], dict[str, Any] | None]) -> dict[str, str]:
    """Model key -> why its canary waits, for each KServe model with a canary whose
    InferenceService (`live[(namespace, name)]`, None or absent: not there) has no Ready
    revision of the stable version yet. Models past staging (the live object already carries a
    canaryTrafficPercent, or shows the stable version Ready) and kubernetes-backend models
    (two Deployments: the stable track exists from the start) are not in the result."""
    out: dict[str, str] = {}
    for model in models:
        if model.backend != "kserve" or model.canary is None:
            continue
        why = _waiting_for(model, live.get((model.namespace, model.name)))
        if why is not None:
            out[model.key] = f"canary {model.canary.version} waits for the stable revision to be Ready ({why})"
    return out


def without_canary(spec: Spec, keys: Collection[str]) -> Spec:
    """`spec` with the canary of the models named by key removed: what is applied while they
    are staged (their stable version at 100%)."""
    if not any(m.key in keys and m.canary is not None for m in spec.models):
        return spec
    models = tuple(dataclasses.replace(m, canary=None) if m.key in keys else m for m in spec.models)
    return dataclasses.replace(spec, models=models)


def _waiting_for(model: Model, obj: dict[str, Any] | None) -> str | None:
    """None when the live InferenceService is past staging, else what it still lacks."""
    if obj is None:
        return f"InferenceService {model.name} does not exist yet: version {model.stable} goes first"
    predictor = _dict(_dict(obj.get("spec")).get("predictor"))
    if predictor.get("canaryTrafficPercent") is not None:
        return None  # a canary was applied before: KServe already tracks a rolled-out revision
    meta = _dict(obj.get("metadata"))
    serving = _dict(meta.get("labels")).get(VERSION_LABEL)
    if serving is not None and serving != model.stable:
        return f"it serves version {serving}, not {model.stable} yet"
    status = _dict(obj.get("status"))
    if not status:
        return "no status yet"
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        return f"KServe has not observed generation {generation} yet"
    conditions = status.get("conditions")
    listed = map(_dict, conditions) if isinstance(conditions, list) else iter(())
    ready = next((c for c in listed if c.get("type") == "Ready"), None)
    if ready is None:
        return "no Ready condition yet"
    if ready.get("status") != "True":
        detail = ready.get("message") or ready.get("reason")
        return f"Ready is {ready.get('status')}" + (f": {detail}" if detail else "")
    if status.get("deploymentMode") == "RawDeployment":
        return None  # no revisions in raw mode (and no traffic split either): Ready is all there is
    predictor_status = _dict(_dict(status.get("components")).get("predictor"))
    latest_ready = predictor_status.get("latestReadyRevision")
    if not latest_ready:
        return "no Ready predictor revision yet"
    latest_created = predictor_status.get("latestCreatedRevision")
    if latest_created and latest_created != latest_ready:
        return f"revision {latest_created} is not Ready yet"
    return None


def _dict(value: Any) -> dict[str, Any]:
    """A live object's field as a mapping ({} when absent or malformed: read as "not yet")."""
    return value if isinstance(value, dict) else {}
