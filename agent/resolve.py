"""Registry references -> artifact URIs: the step between loading a repo and rendering it.

A version entry may name its artifact in a model registry (`registry: {mlflow: ...}` or
`{gto: ...}`) instead of by URI. `resolve_spec` asks the registries it is given (the only
I/O, theirs) and returns a new Spec whose versions carry the resolved URI, digest and the
run's metrics, then checks the promotion gates that waited for those metrics. Everything
else here is pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import SpecError, ValidationFailed
from agent.finite import finite, shown
from agent.registry import RegistryError, ResolvedVersion, check_answer
from agent.spec import Model, ModelVersion, RegistryRef, Spec, gate_problems

__all__ = ["CacheKey", "Resolution", "resolve_spec", "summary_lines"]

# (kind, name, "version=13" | "alias=champion" | "stage=prod", repo or "")
CacheKey = tuple[str, str, str, str]

_REGISTRY_NAMES = {"mlflow": "MLflow", "gto": "GTO"}


@dataclass(frozen=True)
class Resolution:
    """One version entry of one model, resolved: `key` is the model's namespace/name,
    `version` the entry's own version string (how stable/canary name it)."""

    key: str
    version: str
    ref: RegistryRef
    resolved: ResolvedVersion


def cache_key(ref: RegistryRef) -> CacheKey:
    """What one plan resolves once: the same reference in two models is asked once."""
    return (ref.kind, ref.name, ref.selector, ref.repo or "")


def resolve_spec(spec: Spec, registries: Mapping[str, Any],
                 cache: dict[CacheKey, ResolvedVersion] | None = None) -> tuple[Spec, list[Resolution]]:
    """`spec` with every registry version resolved (uri, digest; evaluation merged from the
    run's metrics, the hand-written value winning per key), and what was resolved. The input
    is not changed. `registries` maps a kind ("mlflow", "gto") to an object with
    `resolve(name, **selector) -> ResolvedVersion`. A missing registry or a failed lookup
    raises RegistryError naming the model, the version entry and the reference; a promotion
    gate the run's metrics miss raises ValidationFailed (at the entry's `registry:` line)."""
    cache = {} if cache is None else cache
    resolutions: list[Resolution] = []
    errors: list[SpecError] = []
    models: list[Model] = []
    for model in spec.models:
        if not any(v.registry is not None for v in model.versions.values()):
            models.append(model)
            continue
        versions: dict[str, ModelVersion] = {}
        for name, entry in model.versions.items():
            if entry.registry is None:
                versions[name] = entry
                continue
            resolved = _lookup(model, entry, entry.registry, registries, cache)
            resolutions.append(Resolution(key=model.key, version=name, ref=entry.registry, resolved=resolved))
            versions[name] = dataclasses.replace(
                entry, uri=resolved.uri, digest=resolved.digest, resolved=resolved.version,
                # a metric that is not finite never counts (a gated one is an error: _gate_errors)
                evaluation={**{k: v for k, v in resolved.metrics.items() if finite(v) is not None}, **entry.evaluation},
            )
        errors.extend(_gate_errors(model, versions, resolutions))
        models.append(dataclasses.replace(model, versions=versions, deferred_gates=()))
    if errors:
        raise ValidationFailed(errors, target=spec.config.name)
    return dataclasses.replace(spec, models=tuple(models)), resolutions


def _where(model: Model, entry: ModelVersion) -> str:
    loc = entry.location or model.location
    return f"{loc.file}:{loc.line}: " if loc.file else ""


def _lookup(model: Model, entry: ModelVersion, ref: RegistryRef, registries: Mapping[str, Any],
            cache: dict[CacheKey, ResolvedVersion]) -> ResolvedVersion:
    key = cache_key(ref)
    hit = cache.get(key)
    if hit is not None:
        return hit
    what = f"{_where(model, entry)}model {model.key} version {entry.version!r} ({ref})"
    registry = registries.get(ref.kind)
    if registry is None:
        raise RegistryError(f"{what}: no {_REGISTRY_NAMES[ref.kind]} registry is configured for this agent")
    try:
        if ref.kind == "mlflow":
            resolved = registry.resolve(ref.name, version=ref.version, alias=ref.alias)
        else:
            resolved = registry.resolve(ref.name, version=ref.version, stage=ref.stage, repo=ref.repo)
    except RegistryError as exc:
        raise RegistryError(f"{what}: {exc}") from exc
    if not isinstance(resolved, ResolvedVersion) or not resolved.uri:
        raise RegistryError(f"{what}: the registry gave no artifact URI")
    check_answer(resolved, what)  # the clients check their answers; any registry object is held to it here
    cache[key] = resolved
    return resolved


def _source(resolved: ResolvedVersion) -> str:
    """Where a resolved version's metrics come from: "MLflow run abc", "GTO fraud-scorer@v1"."""
    kind = _REGISTRY_NAMES.get(resolved.registry, resolved.registry)
    if resolved.run_id:
        return f"{kind} run {resolved.run_id}"
    return f"{kind} version {resolved.name} {resolved.version}"


def _gate_errors(model: Model, versions: Mapping[str, ModelVersion], resolutions: list[Resolution]) -> list[SpecError]:
    """The promotion gates of the serving versions whose evaluation came (in part) from the
    registry: each failure is an error at the version entry's `registry:` line. A gated metric
    the registry gives as NaN or ±Infinity never passes (agent.finite): an error naming the
    registry, the model, the reference, the metric and the value."""
    if not model.gates:
        return []
    by_version = {r.version: r for r in resolutions if r.key == model.key}
    serving = [("stable", model.stable)] + ([("canary", model.canary.version)] if model.canary else [])
    gated = {g.metric for g in model.gates}
    out: list[SpecError] = []
    for role, name in serving:
        entry, resolution = versions.get(name), by_version.get(name)
        if entry is None or resolution is None:
            continue
        resolved = resolution.resolved
        original = model.versions[name].evaluation  # hand-written: checked at load already
        source = _source(resolved)
        sources = {k: source for k in resolved.metrics if k not in original}
        index = list(model.versions).index(name)
        loc = entry.location or model.location
        at = f"spec.versions[{index}].registry"
        broken = sorted(k for k in sources if k in gated and finite(resolved.metrics[k]) is None)
        for metric in broken:
            out.append(SpecError(loc.file, loc.line, at, (
                f"promotion gate: {_REGISTRY_NAMES.get(resolved.registry, resolved.registry)} answered "
                f"{metric}={shown(resolved.metrics[metric])} for model {model.key} version {name!r} "
                f"({resolution.ref}, {source}): not a finite number, so it cannot pass a gate")))
        gates = [g for g in model.gates if g.metric not in broken]
        problems = gate_problems(role, name, entry.evaluation, gates, sources=sources,
                                 missing_hint=f" (neither in evaluation: nor in {source})")
        out.extend(SpecError(loc.file, loc.line, at, p) for p in problems)
    return out


def summary_lines(resolutions: Iterable[Resolution]) -> list[str]:
    """One line per resolved entry, for plans and logs:
    `fraud/fraud-scorer 13: mlflow fraud-scorer@champion -> version 13 (s3://ml/1/abc/artifacts/model)`."""
    return [f"{r.key} {r.version}: {r.ref} -> version {r.resolved.version} ({r.resolved.uri})" for r in resolutions]
