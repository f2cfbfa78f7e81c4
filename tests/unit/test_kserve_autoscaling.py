"""Autoscaling on the kserve backend renders what KServe's own admission accepts, and a
combination KServe refuses (or would run other than the Model says) is a validation error
naming file, line and field. The rules are KServe v0.16's (agent/spec/_kserve.py); the
integration test test_kserve_admission.py holds the rendering to KServe's real validator."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MODEL, assert_error, loads, only_error, repo

from agent.render import render

KNATIVE_CLASS = "autoscaling.knative.dev/class"
KSERVE_CLASS = "serving.kserve.io/autoscalerClass"
MODE = "serving.kserve.io/deploymentMode"


def _model(autoscaling: str, annotations: dict[str, str] | None = None, backend: str = "") -> str:
    text = MODEL + autoscaling
    if backend:
        text += f"  backend: {backend}\n"
    if annotations:
        lines = "".join(f"    {k}: {v}\n" for k, v in annotations.items())
        text = text.replace("  namespace: fraud\n", "  namespace: fraud\n  annotations:\n" + lines)
    return text


def _isvc(autoscaling: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    objects = render(loads(repo({"models/scorer.yaml": _model(autoscaling, annotations)})))
    [isvc] = [o for o in objects if o["kind"] == "InferenceService"]
    return isvc


@pytest.mark.parametrize(("autoscaling", "annotations", "metric", "added"), [
    # Knative mode (KServe's default): Knative's HPA class for cpu, its default KPA otherwise
    ("{min: 1, max: 4}", None, "cpu", {KNATIVE_CLASS: "hpa.autoscaling.knative.dev"}),
    ("{min: 1, max: 4, metric: cpu, target: 100}", {MODE: "Knative"}, "cpu",
     {KNATIVE_CLASS: "hpa.autoscaling.knative.dev"}),
    ("{min: 1, max: 4, metric: rps, target: 500}", None, "rps", {}),
    ("{min: 0, max: 4, metric: concurrency}", {MODE: "Serverless"}, "concurrency", {}),
    ("{min: 1, max: 4, metric: rps}", {KNATIVE_CLASS: "kpa.autoscaling.knative.dev"}, "rps", {}),
    # Standard mode: KServe's own HPA
    ("{min: 1, max: 4, metric: cpu}", {MODE: "Standard"}, "cpu", {KSERVE_CLASS: "hpa"}),
    ("{min: 1, max: 4, metric: memory, target: 60}", {MODE: "Standard"}, "memory", {KSERVE_CLASS: "hpa"}),
    ("{min: 1, max: 4, metric: memory}", {MODE: "Standard", KSERVE_CLASS: "hpa"}, "memory", {KSERVE_CLASS: "hpa"}),
])
def test_the_autoscaler_annotation_follows_metric_and_mode(
        autoscaling: str, annotations: dict[str, str] | None, metric: str, added: dict[str, str]) -> None:
    isvc = _isvc(f"  autoscaling: {autoscaling}\n", annotations)
    got = {k: v for k, v in isvc["metadata"]["annotations"].items() if k in (KNATIVE_CLASS, KSERVE_CLASS)}
    own = {k: v for k, v in (annotations or {}).items() if k in (KNATIVE_CLASS, KSERVE_CLASS)}
    assert got == {**own, **added}
    assert isvc["spec"]["predictor"]["scaleMetric"] == metric


def test_fixed_replicas_get_no_autoscaler_annotation() -> None:
    isvc = _isvc("  replicas: 3\n")
    assert not {KNATIVE_CLASS, KSERVE_CLASS} & set(isvc["metadata"]["annotations"])


def test_the_kubernetes_backend_takes_every_metric_and_target() -> None:
    spec = loads(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: memory, target: 250}\n",
                                                    backend="kubernetes")}))
    assert spec.models[0].autoscaling is not None and spec.models[0].autoscaling.target == 250


def test_memory_in_knative_mode_is_refused() -> None:
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: memory}\n")}))
    assert_error(err, "models/scorer.yaml", 13, "spec.autoscaling.metric",
                 "metric memory needs KServe's Standard deployment mode (annotation "
                 "serving.kserve.io/deploymentMode: Standard): in Knative mode the target would be read as MiB "
                 "per replica, not percent")


@pytest.mark.parametrize("metric", ["rps", "concurrency"])
def test_knative_metrics_in_standard_mode_are_refused(metric: str) -> None:
    err = only_error(repo({"models/scorer.yaml": _model(
        "  autoscaling:\n    min: 1\n    max: 4\n    metric: " + metric + "\n", {MODE: "Standard"})}))
    assert_error(err, "models/scorer.yaml", 18, "spec.autoscaling.metric",
                 f"metric {metric} needs KServe's Knative deployment mode: in Standard mode "
                 "(serving.kserve.io/deploymentMode) KServe scales with a HorizontalPodAutoscaler, on cpu or memory only")


def test_a_kpa_class_with_the_default_metric_cpu_is_refused() -> None:
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4}\n",
                                                        {KNATIVE_CLASS: "kpa.autoscaling.knative.dev"})}))
    assert_error(err, "models/scorer.yaml", 7, f"metadata.annotations.{KNATIVE_CLASS}",
                 f"{KNATIVE_CLASS}: kpa.autoscaling.knative.dev selects another autoscaler than autoscaling.metric "
                 "cpu needs (hpa.autoscaling.knative.dev); remove the annotation")


def test_the_deprecated_raw_deployment_name_is_refused_with_the_new_one() -> None:
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: cpu}\n",
                                                        {MODE: "RawDeployment"})}))
    assert_error(err, "models/scorer.yaml", 7, f"metadata.annotations.{MODE}",
                 "deployment mode RawDeployment is KServe's old name for Standard, and KServe's validation does "
                 "not read it as Standard (it refuses cpu there): write Standard")
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4}\n",
                                                        {MODE: "RawDeployment"})}))
    assert err.field == f"metadata.annotations.{MODE}"
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: rps}\n",
                                                        {MODE: "RawDeployment"})}))
    assert_error(err, "models/scorer.yaml", 15, "spec.autoscaling.metric",
                 "metric rps needs KServe's Knative deployment mode")


@pytest.mark.parametrize(("metric", "annotations"), [("cpu", None), ("cpu", {MODE: "Standard"}),
                                                     ("memory", {MODE: "Standard"})])
def test_a_utilisation_above_100_percent_is_refused(metric: str, annotations: dict[str, str] | None) -> None:
    err = only_error(repo({"models/scorer.yaml": _model(
        f"  autoscaling:\n    min: 1\n    max: 4\n    metric: {metric}\n    target: 150\n", annotations)}))
    line = 17 if annotations is None else 19
    assert_error(err, "models/scorer.yaml", line, "spec.autoscaling.target",
                 f"target 150 is above 100: on the kserve backend {metric} is scaled on percent of the request, 1-100")


def test_a_conflicting_kserve_autoscaler_class_is_refused() -> None:
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: cpu}\n",
                                                        {MODE: "Standard", KSERVE_CLASS: "keda"})}))
    assert_error(err, "models/scorer.yaml", 8, f"metadata.annotations.{KSERVE_CLASS}",
                 f"{KSERVE_CLASS}: keda selects another autoscaler than autoscaling.metric cpu needs (hpa)")


def test_a_knative_hpa_class_with_a_kpa_metric_is_refused() -> None:
    err = only_error(repo({"models/scorer.yaml": _model("  autoscaling: {min: 1, max: 4, metric: concurrency}\n",
                                                        {KNATIVE_CLASS: "hpa.autoscaling.knative.dev"})}))
    assert_error(err, "models/scorer.yaml", 7, f"metadata.annotations.{KNATIVE_CLASS}",
                 "selects another autoscaler than autoscaling.metric concurrency needs (kpa.autoscaling.knative.dev)")
