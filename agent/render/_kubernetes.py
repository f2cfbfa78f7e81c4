"""Model -> Deployment(s) + Service + HorizontalPodAutoscaler (the `kubernetes` backend).

A canary is a second Deployment behind the same Service; traffic is weighted by replica
counts, so the split is as exact as the replica count allows. When an HPA scales a
Deployment the Deployment carries no `spec.replicas` (that field belongs to the HPA).

Blue-green (`rollout.strategy: blueGreen`) is not a replica split: both tracks run at full
size (the new one must take everything at the switch, the old one must take it back at once),
the main Service selects one track by its track label (stable below 100%, the new one at 100%)
and a preview Service `<name>-preview` always selects the new track.
"""

from __future__ import annotations

from typing import Any

from agent.render._common import merge_resources, model_env, model_labels, requirements
from agent.render._meta import (
    CANARY_ANNOTATION,
    MODEL_LABEL,
    STABLE_ANNOTATION,
    TRACK_LABEL,
    TRAFFIC_ANNOTATION,
    VERSION_LABEL,
    registry_annotations,
)
from agent.spec import Model, ModelVersion, Resources, ServingRuntime

HTTP_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"


def split(total: int, canary_percent: int) -> tuple[int, int]:
    """(stable, canary) replica counts for a canary share of `total`. A side that takes any
    traffic keeps at least one pod, so a small total may grow by one."""
    if total <= 0:
        return 0, 0
    canary = round(total * canary_percent / 100)
    if canary_percent > 0:
        canary = max(canary, 1)
    stable = total - canary
    if canary_percent < 100:
        stable = max(stable, 1)
    return stable, canary


PREVIEW_SUFFIX = "-preview"


def is_blue_green(model: Model) -> bool:
    """A blue-green rollout of a canary version: the tracks are switched, not split."""
    return model.canary is not None and model.rollout is not None and model.rollout.strategy == "blueGreen"


def workload_objects(model: Model, runtime: ServingRuntime, defaults: Resources) -> list[dict[str, Any]]:
    if is_blue_green(model):
        return _blue_green_objects(model, runtime, defaults)
    tracks: list[tuple[str, ModelVersion, int | None, tuple[int, int] | None]] = []
    traffic = model.canary.traffic if model.canary else 0
    if model.autoscaling is not None:
        a = model.autoscaling
        lo_stable, lo_canary = split(max(a.min, 1), traffic)
        hi_stable, hi_canary = split(a.max, traffic)
        # An HPA keeps at least one pod, and pods take traffic: a track at 0% gets no HPA and
        # zero replicas instead (a canary staged at 0%, or a stable at a 100% canary).
        if traffic < 100:
            tracks.append(("stable", model.versions[model.stable], None, (max(lo_stable, 1), max(hi_stable, 1))))
        else:
            tracks.append(("stable", model.versions[model.stable], 0, None))
        if model.canary is not None and traffic > 0:
            tracks.append(("canary", model.versions[model.canary.version], None, (max(lo_canary, 1), max(hi_canary, 1))))
        elif model.canary is not None:
            tracks.append(("canary", model.versions[model.canary.version], 0, None))
    else:
        total = 1 if model.replicas is None else model.replicas
        stable_n, canary_n = split(total, traffic) if model.canary else (total, 0)
        tracks.append(("stable", model.versions[model.stable], stable_n, None))
        if model.canary is not None:
            tracks.append(("canary", model.versions[model.canary.version], canary_n, None))

    objects: list[dict[str, Any]] = []
    for track, version, replicas, hpa_range in tracks:
        deployment = _deployment(model, runtime, defaults, version, track, replicas)
        objects.append(deployment)
        if hpa_range is not None:
            objects.append(_hpa(model, deployment, version, hpa_range))
    objects.append(_service(model, runtime))
    return objects


def _blue_green_objects(model: Model, runtime: ServingRuntime, defaults: Resources) -> list[dict[str, Any]]:
    """Both tracks at the model's full size (same replicas, or same HPA bounds), whatever the
    traffic: the preview must be able to take all traffic at the switch, and the old version
    all of it back on a switch-back. Git drops the old track when the new version is stable."""
    assert model.canary is not None
    full: tuple[int | None, tuple[int, int] | None]
    if model.autoscaling is not None:
        a = model.autoscaling
        full = (None, (max(a.min, 1), max(a.max, 1)))
    else:
        full = (1 if model.replicas is None else model.replicas, None)
    objects: list[dict[str, Any]] = []
    for track, version in (("stable", model.versions[model.stable]), ("canary", model.versions[model.canary.version])):
        replicas, hpa_range = full
        deployment = _deployment(model, runtime, defaults, version, track, replicas)
        objects.append(deployment)
        if hpa_range is not None:
            objects.append(_hpa(model, deployment, version, hpa_range))
    live_track = "canary" if model.canary.traffic >= 100 else "stable"
    objects.append(_service(model, runtime, track=live_track))
    objects.append(_service(model, runtime, track="canary", preview=True))
    return objects


def _deployment(
    model: Model, runtime: ServingRuntime, defaults: Resources, version: ModelVersion, track: str, replicas: int | None
) -> dict[str, Any]:
    name = model.name if track == "stable" else f"{model.name}-canary"
    selector = {MODEL_LABEL: model.name, TRACK_LABEL: track}
    pod_labels = {**model_labels(model), TRACK_LABEL: track, VERSION_LABEL: version.version}
    ports = [{"name": HTTP_PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}]
    if runtime.metrics_port and runtime.metrics_port != runtime.port:
        ports.append({"name": METRICS_PORT_NAME, "containerPort": runtime.metrics_port, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": "model",
        "image": runtime.image,
        "ports": ports,
        "env": model_env(model, version, runtime),
        "readinessProbe": {"tcpSocket": {"port": HTTP_PORT_NAME}, "periodSeconds": 10},
        # passes the "restricted" Pod Security Standard that model namespaces should enforce
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if runtime.args:
        container["args"] = list(runtime.args)
    resources = requirements(merge_resources(model.resources, runtime.resources, defaults))
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if model.service_account:
        pod_spec["serviceAccountName"] = model.service_account
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    labels = {**model_labels(model), TRACK_LABEL: track, VERSION_LABEL: version.version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": model.namespace, "labels": labels},
        "spec": spec,
    }


def _hpa(model: Model, deployment: dict[str, Any], version: ModelVersion, bounds: tuple[int, int]) -> dict[str, Any]:
    assert model.autoscaling is not None
    a = model.autoscaling
    metric: dict[str, Any]
    if a.metric in ("cpu", "memory"):
        metric = {"type": "Resource", "resource": {"name": a.metric, "target": {"type": "Utilization", "averageUtilization": a.target}}}
    else:
        name = "requests_per_second" if a.metric == "rps" else "concurrent_requests"
        metric = {"type": "Pods", "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(a.target)}}}
    lo, hi = bounds
    meta = deployment["metadata"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": meta["name"], "namespace": model.namespace, "labels": dict(meta["labels"])},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
            "minReplicas": lo,
            "maxReplicas": max(hi, lo),
            "metrics": [metric],
        },
    }


def _service(model: Model, runtime: ServingRuntime, *, track: str | None = None, preview: bool = False) -> dict[str, Any]:
    """The model's Service: every track (a replica split) or, for blue-green, one `track`;
    `preview` is the blue-green preview Service of the new version."""
    ports = [{"name": HTTP_PORT_NAME, "port": 80, "targetPort": HTTP_PORT_NAME, "protocol": "TCP"}]
    if runtime.metrics_port and runtime.metrics_port != runtime.port:
        ports.append({"name": METRICS_PORT_NAME, "port": runtime.metrics_port, "targetPort": METRICS_PORT_NAME, "protocol": "TCP"})
    annotations = {**model.annotations, STABLE_ANNOTATION: model.stable,
                   **registry_annotations(model, model.canary.version if model.canary else None)}
    if model.canary is not None:
        annotations[CANARY_ANNOTATION] = model.canary.version
        annotations[TRAFFIC_ANNOTATION] = str(model.canary.traffic)
    selector = {MODEL_LABEL: model.name}
    if track is not None:
        selector[TRACK_LABEL] = track
    version = model.canary.version if preview and model.canary is not None else model.stable
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{model.name}{PREVIEW_SUFFIX}" if preview else model.name,
            "namespace": model.namespace,
            "labels": {**model_labels(model), VERSION_LABEL: version},
            "annotations": annotations,
        },
        "spec": {"selector": selector, "ports": ports, "type": "ClusterIP"},
    }
