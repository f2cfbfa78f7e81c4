"""What KServe's own admission accepts for an autoscaled InferenceService, and which annotations
select its autoscaler (pure; validation and rendering share it, so they cannot disagree).

KServe v0.16 validates `scaleMetric` by the InferenceService's deployment mode annotation
(pkg/apis/serving/v1beta1/inference_service_validation.go, validateAutoScalingCompExtension):

- `serving.kserve.io/deploymentMode: Standard` with `serving.kserve.io/autoscalerClass: hpa`:
  KServe makes a HorizontalPodAutoscaler, on `cpu` or `memory`, target 1-100 (percent of the
  request, for both).
- Every other value (none, `Knative`, `Serverless`, and the deprecated `RawDeployment`, which
  the validator does not read as Standard): Knative. Its default autoscaler (KPA) scales on
  `concurrency` or `rps`; `autoscaling.knative.dev/class: hpa.autoscaling.knative.dev` selects
  Knative's HPA instead, on `cpu` or `memory`, target 1-100. Knative's HPA reads a `cpu`
  target as percent but a `memory` target as MiB per replica (knative.dev/serving
  pkg/reconciler/autoscaling/hpa/resources), so `memory` as documented (percent) needs Standard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
KNATIVE_CLASS_ANNOTATION = "autoscaling.knative.dev/class"
KNATIVE_HPA = "hpa.autoscaling.knative.dev"
KNATIVE_KPA = "kpa.autoscaling.knative.dev"
HPA_METRICS = ("cpu", "memory")
STANDARD = "Standard"
LEGACY_RAW = "RawDeployment"


@dataclass(frozen=True)
class AutoscalingProblem:
    """One reason KServe would refuse (or silently misread) a Model's autoscaling."""

    field: tuple[str, ...]  # path in the Model document
    message: str


def standard_mode(annotations: Mapping[str, str]) -> bool:
    """Whether KServe's validator reads the InferenceService as Standard (raw Deployment) mode."""
    return annotations.get(DEPLOYMENT_MODE_ANNOTATION) == STANDARD


def autoscaler_annotations(metric: str, annotations: Mapping[str, str]) -> dict[str, str]:
    """The annotations an InferenceService scaled on `metric` needs besides the Model's own
    (`annotations`): the HPA class of its deployment mode for cpu and memory, none for the
    Knative KPA's concurrency and rps. Only for a combination without problems."""
    if metric not in HPA_METRICS:
        return {}
    if standard_mode(annotations):
        return {AUTOSCALER_CLASS_ANNOTATION: "hpa"}
    return {KNATIVE_CLASS_ANNOTATION: KNATIVE_HPA}


def autoscaling_problems(metric: str, target: int, annotations: Mapping[str, str]) -> list[AutoscalingProblem]:
    """Why KServe would refuse an InferenceService scaled on metric/target with these Model
    annotations, or run it other than the Model says; [] when it works. A problem with the
    metric or the target is one the Model wrote: the defaults (cpu, 80) have none of their own."""
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    at_mode = ("metadata", "annotations", DEPLOYMENT_MODE_ANNOTATION)
    at_metric = ("spec", "autoscaling", "metric")
    hpa = metric in HPA_METRICS
    if mode == LEGACY_RAW:
        if not hpa:
            return [AutoscalingProblem(at_metric, f"metric {metric} needs KServe's Knative deployment mode: in raw "
                                                  "Deployment mode KServe scales with a HorizontalPodAutoscaler, on "
                                                  "cpu or memory only")]
        return [AutoscalingProblem(at_mode, f"deployment mode {LEGACY_RAW} is KServe's old name for {STANDARD}, and "
                                            f"KServe's validation does not read it as {STANDARD} (it refuses {metric} "
                                            f"there): write {STANDARD}")]
    if standard_mode(annotations) and not hpa:
        return [AutoscalingProblem(at_metric, f"metric {metric} needs KServe's Knative deployment mode: in {STANDARD} "
                                              f"mode ({DEPLOYMENT_MODE_ANNOTATION}) KServe scales with a "
                                              "HorizontalPodAutoscaler, on cpu or memory only")]
    if metric == "memory" and not standard_mode(annotations):
        return [AutoscalingProblem(at_metric, f"metric memory needs KServe's {STANDARD} deployment mode (annotation "
                                              f"{DEPLOYMENT_MODE_ANNOTATION}: {STANDARD}): in Knative mode the "
                                              "target would be read as MiB per replica, not percent")]
    problems: list[AutoscalingProblem] = []
    if hpa and target > 100:
        problems.append(AutoscalingProblem(("spec", "autoscaling", "target"),
                                           f"target {target} is above 100: on the kserve backend {metric} is scaled "
                                           "on percent of the request, 1-100"))
    problems.extend(_class_conflicts(metric, annotations))
    return problems


def _class_conflicts(metric: str, annotations: Mapping[str, str]) -> list[AutoscalingProblem]:
    """A Model annotation that selects another autoscaler than `metric` needs."""
    if standard_mode(annotations):
        key, needed = AUTOSCALER_CLASS_ANNOTATION, "hpa"
    else:
        key = KNATIVE_CLASS_ANNOTATION
        needed = KNATIVE_HPA if metric in HPA_METRICS else KNATIVE_KPA
    value = annotations.get(key)
    if value is None or value == needed:
        return []
    return [AutoscalingProblem(("metadata", "annotations", key),
                               f"{key}: {value} selects another autoscaler than autoscaling.metric {metric} "
                               f"needs ({needed}); remove the annotation: the agent selects the autoscaler")]
