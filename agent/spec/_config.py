"""The RepositoryConfig document -> RepositoryConfig (defaults, policy, metrics, registries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.errors import SpecError
from agent.spec._common import location_of, validated
from agent.spec._resources import read_resources
from agent.spec._types import MetricNames, MlflowSettings, Policy, PruneBudget, Registries, RepositoryConfig
from agent.spec._yaml import Document


def read_config(docs: list[Document], errors: list[SpecError]) -> RepositoryConfig:
    valid = []
    for doc in docs:
        errs = validated(doc, "RepositoryConfig")
        errors.extend(errs)
        if not errs:
            valid.append(doc)
    if len(docs) > 1:
        first = docs[0]
        for doc in docs[1:]:
            errors.append(doc.error(["kind"], f"only one RepositoryConfig is allowed (first at {first.path}:{first.line})"))
    if not valid:
        return RepositoryConfig()
    doc = valid[0]
    spec = doc.data.get("spec") or {}
    defaults = spec.get("defaults") or {}
    policy = spec.get("policy") or {}
    budget = policy.get("pruneBudget") or {}
    metrics = spec.get("metrics") or {}
    base_policy = Policy()
    base_metrics = MetricNames()
    return RepositoryConfig(
        name=doc.data["metadata"]["name"],
        default_namespace=defaults.get("namespace", "default"),
        default_backend=defaults.get("backend", "kserve"),
        default_stage=defaults.get("stage", "production"),
        default_resources=read_resources(defaults.get("resources")),
        monitor_for=defaults.get("monitorFor", "5m"),
        monitor_window=defaults.get("monitorWindow", "5m"),
        policy=Policy(
            allowed_namespaces=tuple(policy.get("allowedNamespaces", ())),
            allowed_kinds=tuple(policy.get("allowedKinds", base_policy.allowed_kinds)),
            prune=bool(policy.get("prune", False)),
            allow_cluster_admin=bool(policy.get("allowClusterAdmin", False)),
            prune_budget=PruneBudget(
                max_fraction=float(budget.get("maxFraction", PruneBudget.max_fraction)),
                max_count=int(budget.get("maxCount", PruneBudget.max_count)),
            ),
        ),
        metrics=MetricNames(
            latency_histogram=metrics.get("latencyHistogram", base_metrics.latency_histogram),
            requests_total=metrics.get("requestsTotal", base_metrics.requests_total),
            errors_total=metrics.get("errorsTotal", base_metrics.errors_total),
            drift_score=metrics.get("driftScore", base_metrics.drift_score),
        ),
        exclude=tuple(spec.get("exclude", ())),
        location=location_of(doc),
        registries=_registries(doc, spec.get("registries") or {}, errors),
    )


def _registries(doc: Document, raw: Mapping[str, Any], errors: list[SpecError]) -> Registries:
    """`spec.registries`: where registry references resolve. Only the shape is checked; the
    tracking URI's default (MLFLOW_TRACKING_URI) is read when resolving."""
    mlflow = raw.get("mlflow") or {}
    if "tokenEnv" in mlflow and "tokenFile" in mlflow:
        errors.append(doc.error(["spec", "registries", "mlflow", "tokenFile"], "tokenEnv and tokenFile are exclusive: name one"))
    return Registries(mlflow=MlflowSettings(
        tracking_uri=mlflow.get("trackingUri"), token_env=mlflow.get("tokenEnv"), token_file=mlflow.get("tokenFile"),
    ))
