"""Model -> KServe InferenceService (+ the namespaced KServe ServingRuntime it uses).

KServe's canary semantics: the spec always describes the newest revision and
`canaryTrafficPercent` sends that share of traffic to it; the rest stays on the last revision
rolled out at 100%. So with a canary the spec carries the canary's artifact.

Blue-green is the same object at two points: canaryTrafficPercent 0 (preview: the new revision
runs beside the old one with no traffic) and 100 (switched; the old revision stays as KServe's
previous rolled-out revision, so a switch-back is a number). With tag routing on, KServe
exposes the new revision alone at its `latest-<name>` URL (and the old at `prev-<name>`):
that is the preview.

Autoscaling on cpu or memory carries the annotation selecting the HorizontalPodAutoscaler of
the Model's KServe deployment mode (Knative's HPA class, or KServe's `autoscalerClass: hpa` in
Standard mode): without it KServe's admission refuses the metric (agent.spec's
`autoscaler_annotations`; the validation refuses the combinations no annotation fixes).
"""

from __future__ import annotations

from typing import Any

from agent.render._common import merge_resources, model_env, model_labels, requirements
from agent.render._meta import (
    CANARY_ANNOTATION,
    STABLE_ANNOTATION,
    TRAFFIC_ANNOTATION,
    VERSION_LABEL,
    registry_annotations,
)
from agent.spec import Model, Resources, ServingRuntime, autoscaler_annotations

KSERVE_API = "serving.kserve.io/v1beta1"
KSERVE_RUNTIME_API = "serving.kserve.io/v1alpha1"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
_SCALE_METRIC = {"cpu": "cpu", "memory": "memory", "concurrency": "concurrency", "rps": "rps"}


def inference_service(model: Model, runtime: ServingRuntime | None, defaults: Resources) -> dict[str, Any]:
    canary = model.canary
    serving = model.versions[canary.version] if canary else model.versions[model.stable]
    model_spec: dict[str, Any] = {
        "modelFormat": {"name": model.format, **({"version": model.format_version} if model.format_version else {})},
        "storageUri": serving.uri,
    }
    if runtime is not None:
        model_spec["runtime"] = runtime.name
        model_spec["protocolVersion"] = runtime.protocol
    resources = requirements(merge_resources(model.resources, runtime.resources if runtime else None, defaults))
    if resources:
        model_spec["resources"] = resources
    env = model_env(model, serving, None)
    if env:
        model_spec["env"] = env

    predictor: dict[str, Any] = {"model": model_spec}
    if model.autoscaling is not None:
        predictor["minReplicas"] = model.autoscaling.min
        predictor["maxReplicas"] = model.autoscaling.max
        predictor["scaleMetric"] = _SCALE_METRIC[model.autoscaling.metric]
        predictor["scaleTarget"] = model.autoscaling.target
    else:
        replicas = 1 if model.replicas is None else model.replicas
        predictor["minReplicas"] = replicas
        predictor["maxReplicas"] = max(replicas, 1)
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary.traffic
    if model.service_account:
        predictor["serviceAccountName"] = model.service_account

    annotations = {**model.annotations, STABLE_ANNOTATION: model.stable,
                   **registry_annotations(model, canary.version if canary else None)}
    if model.autoscaling is not None:  # the autoscaler KServe's admission needs for the metric
        annotations.update(autoscaler_annotations(model.autoscaling.metric, model.annotations))
    if canary is not None:
        annotations[CANARY_ANNOTATION] = canary.version
        annotations[TRAFFIC_ANNOTATION] = str(canary.traffic)
        if model.rollout is not None and model.rollout.strategy == "blueGreen":
            annotations[TAG_ROUTING_ANNOTATION] = "true"
    return {
        "apiVersion": KSERVE_API,
        "kind": "InferenceService",
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": {**model_labels(model), VERSION_LABEL: serving.version},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def serving_runtime(runtime: ServingRuntime, namespace: str, formats: list[str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": runtime.image,
        "ports": [{"containerPort": runtime.port, "protocol": "TCP"}],
    }
    if runtime.args:
        container["args"] = list(runtime.args)
    if runtime.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(runtime.env.items())]
    resources = requirements(runtime.resources)
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": KSERVE_RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": {"name": runtime.name, "namespace": namespace, "labels": dict(runtime.labels)},
        "spec": {
            "supportedModelFormats": [{"name": f, "autoSelect": True} for f in sorted(formats)],
            "protocolVersions": [runtime.protocol],
            "containers": [container],
        },
    }
