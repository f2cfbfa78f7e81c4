"""Model and ServingRuntime documents -> Model and ServingRuntime: versions, registry
references, canary, autoscaling, runtimes, resources and promotion gates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent.errors import SpecError
from agent.finite import shown, within
from agent.spec._common import check_namespace, location_of, missing_field
from agent.spec._kserve import autoscaling_problems
from agent.spec._resources import limits_below_requests, read_resources
from agent.spec._rollout import read_rollout
from agent.spec._types import (
    Autoscaling,
    Canary,
    Gate,
    Location,
    Model,
    ModelVersion,
    RegistryKind,
    RegistryRef,
    RepositoryConfig,
    Rollout,
    ServingRuntime,
)
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document


def read_runtime(doc: Document, errors: list[SpecError]) -> ServingRuntime | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    resources = read_resources(spec.get("resources"))
    problems = list(limits_below_requests([("this ServingRuntime", resources)]))
    for problem in problems:
        errors.append(doc.error(["spec", "resources"], problem))
    if problems:
        return None
    return ServingRuntime(
        name=meta["name"],
        image=spec["image"],
        formats=tuple(spec["formats"]),
        protocol=spec.get("protocol", "v2"),
        port=int(spec.get("port", 8080)),
        metrics_port=spec.get("metricsPort"),
        metrics_path=spec.get("metricsPath", "/metrics"),
        args=tuple(spec.get("args", ())),
        env=dict(spec.get("env", {})),
        resources=resources,
        labels=dict(meta.get("labels", {})),
        location=location_of(doc),
    )


def read_model(doc: Document, config: RepositoryConfig, runtimes: Mapping[str, ServingRuntime], errors: list[SpecError],
           unreadable: Unreadable | None = None) -> Model | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    ns = meta.get("namespace", config.default_namespace)
    before = len(errors)
    check_namespace(doc, ["metadata", "namespace"], ns, config, errors)

    versions: dict[str, ModelVersion] = {}
    for i, v in enumerate(spec["versions"]):
        if v["version"] in versions:
            errors.append(doc.error(["spec", "versions", i, "version"], f"duplicate version {v['version']!r}"))
            continue
        ref = _registry_ref(doc, v, ["spec", "versions", i], errors)
        at: list[str | int] = ["spec", "versions", i, "registry"] if "registry" in v else ["spec", "versions", i]
        versions[v["version"]] = ModelVersion(
            version=v["version"], uri=v.get("uri", ""), digest=v.get("digest"),
            evaluation={k: float(x) for k, x in (v.get("evaluation") or {}).items()},
            registry=ref, location=Location(doc.path, doc.line_of(at)),
        )
    known = ", ".join(versions)
    stable = spec["stable"]
    if stable not in versions:
        errors.append(doc.error(["spec", "stable"], f"version {stable!r} is not listed in spec.versions ({known})"))
    rollout = read_rollout(doc, spec["rollout"], errors) if "rollout" in spec else None
    canary = None
    if "canary" in spec:
        canary = Canary(version=spec["canary"]["version"], traffic=_canary_traffic(doc, spec["canary"], rollout, errors))
        if canary.version not in versions:
            errors.append(doc.error(["spec", "canary", "version"], f"version {canary.version!r} is not listed in spec.versions ({known})"))
        elif canary.version == stable:
            errors.append(doc.error(["spec", "canary", "version"], f"canary version {stable!r} is the stable version; remove the canary to finish a promotion"))

    autoscaling = None
    if "autoscaling" in spec:
        a = spec["autoscaling"]
        autoscaling = Autoscaling(min=a["min"], max=a["max"], metric=a.get("metric", "cpu"), target=a.get("target", 80))
        if autoscaling.min > autoscaling.max:
            errors.append(doc.error(["spec", "autoscaling", "min"], f"min ({autoscaling.min}) is greater than max ({autoscaling.max})"))

    backend = spec.get("backend", config.default_backend)
    if autoscaling is not None and backend == "kserve":  # what KServe's own admission accepts
        for refusal in autoscaling_problems(autoscaling.metric, autoscaling.target, meta.get("annotations") or {}):
            errors.append(doc.error(list(refusal.field), refusal.message))
    fmt = spec["format"]
    runtime_name = spec.get("runtime")
    if runtime_name is not None:
        runtime = runtimes.get(runtime_name)
        if runtime is None:
            if unreadable is None or not unreadable.may_declare_runtime(runtime_name):  # else its own error comes first
                names = ", ".join(sorted(runtimes)) or "none declared"
                errors.append(doc.error(["spec", "runtime"], f"ServingRuntime {runtime_name!r} not found in the repo ({names})"))
        elif fmt not in runtime.formats:
            errors.append(doc.error(["spec", "format"], f"runtime {runtime_name!r} does not serve format {fmt!r} (it serves {', '.join(runtime.formats)})"))
    elif backend == "kubernetes":
        errors.append(doc.error(["spec", "runtime"], "the kubernetes backend needs a runtime (it provides the container image)"))

    resources = read_resources(spec.get("resources"))
    runtime_of = runtimes.get(runtime_name) if runtime_name is not None else None
    layers = [("the Model", resources)]
    if runtime_of is not None:
        layers.append((f"ServingRuntime {runtime_of.name!r}", runtime_of.resources))
    layers.append(("defaults.resources", config.default_resources))
    for problem in limits_below_requests(layers):
        errors.append(doc.error(["spec", "resources"], problem))

    gates = tuple(Gate(metric=g["metric"], min=g.get("min"), max=g.get("max")) for g in spec.get("gates", ()))
    serving = [("stable", stable)] + ([("canary", canary.version)] if canary else [])
    deferred: list[str] = []
    for role, version in serving:
        if version not in versions:
            continue
        field = ["spec", "stable"] if role == "stable" else ["spec", "canary", "version"]
        entry = versions[version]
        # a registry version's missing metrics come from its run once resolved: checked then
        registry = entry.registry is not None
        if registry and any(g.metric not in entry.evaluation for g in gates):
            deferred.append(version)
        for problem in gate_problems(role, version, entry.evaluation, gates, skip_missing=registry):
            errors.append(doc.error(field, problem))

    if len(errors) > before:
        return None
    return Model(
        name=meta["name"],
        namespace=ns,
        format=fmt,
        format_version=spec.get("formatVersion"),
        versions=versions,
        stable=stable,
        canary=canary,
        backend=backend,
        stage=spec.get("stage", config.default_stage),
        runtime=runtime_name,
        resources=resources,  # render layers the runtime's, then the repo defaults
        replicas=spec.get("replicas"),
        autoscaling=autoscaling,
        gates=gates,
        owner=spec.get("owner"),
        env=dict(spec.get("env", {})),
        service_account=spec.get("serviceAccountName"),
        labels=dict(meta.get("labels", {})),
        annotations=dict(meta.get("annotations", {})),
        location=location_of(doc),
        rollout=rollout,
        deferred_gates=tuple(deferred),
    )


def gate_problems(role: str, version: str, evaluation: Mapping[str, float], gates: Iterable[Gate], *,
                  sources: Mapping[str, str] | None = None, skip_missing: bool = False,
                  missing_hint: str = "") -> list[str]:
    """The promotion-gate failures of one serving version (pure): each message starts
    "promotion gate:". `sources` names where a metric came from ("MLflow run abc"); a
    missing metric is skipped with `skip_missing` (a registry version before resolution),
    and `missing_hint` is added to its message otherwise."""
    out = []
    for gate in gates:
        value = evaluation.get(gate.metric)
        origin = f" from {sources[gate.metric]}" if sources and gate.metric in sources else ""
        if value is None:
            if not skip_missing:
                out.append(f"promotion gate: {role} version {version!r} has no recorded evaluation of {gate.metric!r}{missing_hint}")
        elif within(value, gate.min, gate.max) is None:  # NaN or ±Inf: never a pass (agent.finite)
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={shown(value)}{origin}, "
                       "not a finite number")
        elif gate.min is not None and value < gate.min:
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={value:g}{origin}, below the minimum {gate.min:g}")
        elif gate.max is not None and value > gate.max:
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={value:g}{origin}, above the maximum {gate.max:g}")
    return out


_SELECTORS: dict[RegistryKind, tuple[str, str]] = {"mlflow": ("version", "alias"), "gto": ("version", "stage")}


def _registry_ref(doc: Document, v: Mapping[str, Any], at: list[str | int], errors: list[SpecError]) -> RegistryRef | None:
    """The registry reference of a version entry, its shape checked (offline: nothing is
    resolved here); None, with an error, for a wrong one or for neither uri nor registry."""
    if "registry" not in v:
        if "uri" not in v:
            errors.append(doc.error(at, "missing required field 'uri' (or registry: the version in a model registry)"))
        return None
    before = len(errors)
    here: list[str | int] = [*at, "registry"]
    for other in ("uri", "digest"):
        if other in v:
            errors.append(doc.error([*at, other], f"{other} and registry are exclusive: a registry version takes its "
                                                  f"{'artifact URI' if other == 'uri' else 'digest'} from the registry"))
    raw = v["registry"] or {}
    kinds = [k for k in _SELECTORS if k in raw]
    if len(kinds) != 1:
        found = f"found {' and '.join(kinds)}" if kinds else "found none"
        errors.append(doc.error(here, f"name exactly one registry: mlflow or gto ({found})"))
        return None
    kind = kinds[0]
    entry = raw[kind]
    chosen = [s for s in _SELECTORS[kind] if s in entry]
    if len(chosen) != 1:
        a, b = _SELECTORS[kind]
        found = "both given" if chosen else "neither given"
        errors.append(doc.error([*here, kind], f"give exactly one of {a} or {b} ({found})"))
    if len(errors) > before:
        return None
    return RegistryRef(
        kind=kind, name=str(entry["name"]),
        version=str(entry["version"]) if "version" in entry else None,
        alias=entry.get("alias"), stage=entry.get("stage"), repo=entry.get("repo"),
    )


def _canary_traffic(doc: Document, raw: Mapping[str, Any], rollout: Rollout | None, errors: list[SpecError]) -> int:
    """The canary's traffic: as written; with a canary rollout and none written, the first
    step; with blueGreen always 0 (the preview gets no live traffic until the switch)."""
    if rollout is not None and rollout.strategy == "blueGreen":
        return 0
    if "traffic" in raw:
        return int(raw["traffic"])
    if rollout is None:
        errors.append(missing_field(doc, ["spec", "canary", "traffic"], "required unless spec.rollout decides the traffic"))
        return 0
    return rollout.steps[0] if rollout.steps else 0
