"""Health of live objects, read from their status (pure: dicts in, verdicts out)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

State = Literal["Healthy", "Progressing", "Degraded", "Missing", "Unknown"]
_RANK: dict[str, int] = {"Healthy": 0, "Unknown": 1, "Progressing": 2, "Degraded": 3, "Missing": 4}


@dataclass(frozen=True)
class Health:
    state: State
    message: str = ""


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def of(obj: dict[str, Any] | None) -> Health:
    if obj is None:
        return Health("Missing", "object does not exist")
    kind = obj.get("kind")
    if kind == "Deployment":
        return _deployment(obj)
    if kind == "InferenceService":
        return _inference_service(obj)
    if kind == "HorizontalPodAutoscaler":
        return _hpa(obj)
    return Health("Healthy")


def _deployment(obj: dict[str, Any]) -> Health:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Health("Progressing", "waiting for the controller to observe the new generation")
    conditions = _conditions(obj)
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health("Degraded", str(progressing.get("message", "progress deadline exceeded")))
    want = spec.get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if updated < want:
        return Health("Progressing", f"{updated} of {want} replicas updated")
    if status.get("replicas", 0) > updated:
        return Health("Progressing", f"{status.get('replicas', 0) - updated} old replicas pending termination")
    if available < want:
        return Health("Progressing", f"{available} of {want} replicas available")
    if conditions.get("Available", {}).get("status") != "True":
        return Health("Progressing", "Available condition not yet true")
    return Health("Healthy", f"{available}/{want} replicas available")


def _inference_service(obj: dict[str, Any]) -> Health:
    ready = _conditions(obj).get("Ready")
    if ready is None:
        return Health("Unknown", "no Ready condition yet (is the KServe controller running?)")
    if ready.get("status") == "True":
        return Health("Healthy", "Ready")
    if ready.get("status") == "False":
        return Health("Degraded", str(ready.get("message") or ready.get("reason") or "not ready"))
    return Health("Progressing", str(ready.get("reason") or "becoming ready"))


# The HPA conditions that mean it cannot do its job (the same table Argo CD uses).
_HPA_DEGRADED = {
    ("AbleToScale", "FailedGetScale"), ("AbleToScale", "FailedUpdateScale"),
    ("ScalingActive", "FailedGetResourceMetric"), ("ScalingActive", "InvalidSelector"),
}


def _hpa(obj: dict[str, Any]) -> Health:
    status = obj.get("status") or {}
    if not status.get("conditions"):
        return Health("Progressing", "the HPA controller has not reported yet")
    for condition in status["conditions"]:
        if condition.get("status") == "False" and (condition.get("type"), condition.get("reason")) in _HPA_DEGRADED:
            return Health("Degraded", f"{condition.get('type')}: {condition.get('message') or condition.get('reason')}")
    current, desired = status.get("currentReplicas", 0), status.get("desiredReplicas", 0)
    if current < desired:
        return Health("Progressing", f"scaling to {desired} replicas ({current} now)")
    return Health("Healthy", f"{current} replicas (desired {desired})")


def worst(items: Iterable[Health]) -> Health:
    """The least healthy of several objects' health (a model is as healthy as its worst part)."""
    result: Health | None = None
    for h in items:
        if result is None or _RANK[h.state] > _RANK[result.state] or (
            _RANK[h.state] == _RANK[result.state] and h.message and not result.message
        ):
            result = h
    return result or Health("Healthy")
