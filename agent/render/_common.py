"""Pieces shared by the backends: resource requirements and env lists."""

from __future__ import annotations

from typing import Any

from agent.render._meta import MODEL_LABEL
from agent.spec import Model, ModelVersion, Resources, ServingRuntime

GPU_RESOURCE = "nvidia.com/gpu"


def merge_resources(model: Resources, runtime: Resources | None, defaults: Resources) -> Resources:
    """Field by field, the most specific layer that sets the field wins: the Model, then its
    ServingRuntime (what that server needs), then the RepositoryConfig's `defaults.resources`
    (the fallback for whatever neither says). An explicit `gpu: 0` is set: it drops a GPU."""
    present = [layer for layer in (model, runtime, defaults) if layer is not None]

    def pick(attr: str) -> Any:
        return next((value for layer in present if (value := getattr(layer, attr)) is not None), None)

    return Resources(
        cpu=pick("cpu"), memory=pick("memory"), gpu=pick("gpu"),
        cpu_limit=pick("cpu_limit"), memory_limit=pick("memory_limit"),
    )


def requirements(res: Resources) -> dict[str, Any]:
    """Kubernetes ResourceRequirements; limits default to requests for memory (no OOM surprise)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = res.cpu
    if res.memory:
        requests["memory"] = res.memory
    if res.cpu_limit:
        limits["cpu"] = res.cpu_limit
    if res.memory_limit or res.memory:
        limits["memory"] = str(res.memory_limit or res.memory)
    if res.gpu is not None:  # an explicit 0 is rendered: it overrides a GPU the runtime's container asks for
        requests[GPU_RESOURCE] = str(res.gpu)
        limits[GPU_RESOURCE] = str(res.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def env_list(*sources: dict[str, str]) -> list[dict[str, str]]:
    merged: dict[str, str] = {}
    for source in sources:
        merged.update(source)
    return [{"name": k, "value": v} for k, v in sorted(merged.items())]


def model_env(model: Model, version: ModelVersion, runtime: ServingRuntime | None) -> list[dict[str, str]]:
    ours = {
        "MODEL_NAME": model.name,
        "MODEL_VERSION": version.version,
        "MODEL_URI": version.uri,
        "MODEL_FORMAT": model.format,
    }
    if version.digest:
        ours["MODEL_DIGEST"] = version.digest
    return env_list(runtime.env if runtime else {}, model.env, ours)


def model_labels(model: Model) -> dict[str, str]:
    return {**model.labels, MODEL_LABEL: model.name}
