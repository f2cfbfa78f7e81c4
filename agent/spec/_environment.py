"""Environment documents -> Environments: each model of the repo with one environment's overlay
applied (Kustomize overlays, Fleet's per-target customizations, for our kinds).

An overlay (`spec.models.<model>` of an Environment) sets fields of the Model's spec: stable,
canary (null: none in this environment), rollout, replicas, autoscaling (each of these two
replaces the other), resources and env (merged key by key over the Model's). The overlaid
Model is read by the same reader as any Model, so every rule holds per environment (a version
the model does not list, a promotion gate its stable version misses there, a rollout rule no
Monitor declares); a problem of an overlaid field names the Environment's file, line and field,
and one of the Model's own fields is reported once, for the Model.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import AgentError, SpecError
from agent.spec._common import location_of, seconds_of, validated
from agent.spec._model import read_model
from agent.spec._rollout import check_rollout_rules
from agent.spec._types import Environment, Model, RepositoryConfig, ServingRuntime, Spec
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document

MERGED = ("resources", "env")  # merged key by key over the Model's; every other field replaces
EXCLUSIVE = {"replicas": "autoscaling", "autoscaling": "replicas"}
TARGET_MAX = 63  # "<repo target>-<environment>" names an inventory, a Lease and a label value


class _Overlaid(Document):
    """A Model's document with one environment's overlay merged into its spec. A problem of an
    overlaid field is reported at the overlay (the Environment's file and line); the others
    are the Model's own, reported once for the Model and dropped here."""

    def __init__(self, base: Document, env_doc: Document, entry: str, overlay: Mapping[str, Any]) -> None:
        data = copy.copy(base.data)
        spec = dict(data["spec"])
        for key, value in overlay.items():
            if key in MERGED and isinstance(spec.get(key), dict):
                spec[key] = {**spec[key], **value}
            elif key == "canary" and value is None:
                spec.pop("canary", None)
            else:
                spec[key] = value
            if key in EXCLUSIVE:
                spec.pop(EXCLUSIVE[key], None)
        data["spec"] = spec
        super().__init__(path=base.path, index=base.index, data=data, line=base.line, text=base.text,
                         schema_errors=[])
        self.base, self.env_doc, self.entry, self.overlay = base, env_doc, entry, overlay
        self.routed: list[SpecError] = []

    def line_of(self, field_path: Sequence[str | int]) -> int:
        return self.base.line_of(field_path)

    def error(self, field_path: Sequence[str | int], message: str) -> SpecError:
        if len(field_path) >= 2 and field_path[0] == "spec" and field_path[1] in self.overlay:
            err = self.env_doc.error(["spec", "models", self.entry, *field_path[1:]], message)
            self.routed.append(err)
            return err
        return self.base.error(field_path, message)


def read_environments(docs: list[Document], config: RepositoryConfig, runtimes: Mapping[str, ServingRuntime],
                      models: Mapping[str, Model], model_docs: Mapping[str, Document], declared: set[str],
                      monitor_docs: list[Document], errors: list[SpecError],
                      unreadable: Unreadable) -> tuple[Environment, ...]:
    """Every Environment document, validated, its models overlaid (sorted by name)."""
    valid: dict[str, Document] = {}
    for doc in docs:
        schema = validated(doc, "Environment")
        errors.extend(schema)
        if schema:
            continue
        name = doc.data["metadata"]["name"]
        if name in valid:
            first = valid[name]
            errors.append(doc.error(["metadata", "name"], f"duplicate Environment {name!r} (first at {first.path}:{first.line})"))
            continue
        valid[name] = doc
    out = [env for doc in valid.values()
           if (env := _read_one(doc, valid, config, runtimes, models, model_docs, declared, monitor_docs, errors,
                                unreadable))]
    _check_clusters(out, valid, errors)
    return tuple(sorted(out, key=lambda e: e.name))


def _read_one(doc: Document, names: Mapping[str, Document], config: RepositoryConfig,
              runtimes: Mapping[str, ServingRuntime], models: Mapping[str, Model], model_docs: Mapping[str, Document],
              declared: set[str], monitor_docs: list[Document], errors: list[SpecError],
              unreadable: Unreadable) -> Environment | None:
    before = len(errors)
    name = doc.data["metadata"]["name"]
    spec = doc.data["spec"]
    target = f"{config.name}-{name}"
    if len(target) > TARGET_MAX:
        errors.append(doc.error(["metadata", "name"], f"the environment's target {target!r} (the repo's name, '-', this "
                                                      f"name) is longer than {TARGET_MAX} characters"))
    source = spec.get("promotesFrom")
    if source is not None and source not in names:
        known = ", ".join(sorted(names))
        errors.append(doc.error(["spec", "promotesFrom"], f"environment {source!r} is not declared in the repo ({known})"))
    elif source == name:
        errors.append(doc.error(["spec", "promotesFrom"], f"environment {name!r} cannot promote from itself"))
    soak = spec.get("soak", "0s")
    overlays: dict[str, tuple[str, ...]] = {}
    overlaid: dict[str, Model] = {}
    overlaid_docs: dict[str, Document] = {}
    for entry, overlay in (spec.get("models") or {}).items():
        key = _key(entry, declared)
        if key is None:  # a bare name in several namespaces
            spaces = ", ".join(sorted(k.split("/", 1)[0] for k in declared if k.split("/", 1)[1] == entry))
            errors.append(doc.error(["spec", "models", entry], f"model {entry!r} is in several namespaces ({spaces}): "
                                                               "write namespace/name"))
            continue
        base = models.get(key)
        if base is None:
            # a Model that failed its own checks is reported there; one that did not parse may be it
            if key not in declared and not unreadable.may_declare_model(key.rsplit("/", 1)[1]):
                known = ", ".join(sorted(k.split("/", 1)[1] for k in declared)) or "none declared"
                errors.append(doc.error(["spec", "models", entry], f"model {entry!r} is not declared in the repo ({known})"))
            continue
        if key in overlays:
            errors.append(doc.error(["spec", "models", entry], f"model {key!r} is named twice in this environment"))
            continue
        merged = _Overlaid(model_docs[key], doc, entry, overlay)
        scratch: list[SpecError] = []
        model = read_model(merged, config, runtimes, scratch, unreadable)
        errors.extend(merged.routed)  # the Model's own problems were reported for the Model
        overlays[key] = tuple(sorted(overlay))
        if model is None:
            continue
        overlaid[key], overlaid_docs[key] = model, merged
    rollouts = {k: m for k, m in overlaid.items() if "rollout" in overlays[k]}
    check_rollout_rules(rollouts, overlaid_docs, monitor_docs, config, errors, unreadable)
    if len(errors) > before:
        return None
    return Environment(
        name=name, clusters=tuple(spec["clusters"]),
        models=tuple(sorted({**models, **overlaid}.values(), key=lambda m: m.key)),
        promotes_from=source, soak=soak, soak_seconds=seconds_of(soak), prometheus=spec.get("prometheus"),
        promotion=(spec.get("promotion") or {}).get("policy", "manual"), overlays=overlays,
        location=location_of(doc),
    )


def _key(entry: str, declared: set[str]) -> str | None:
    """namespace/name of an overlay's model: as written, or the one Model of that bare name
    (None when several namespaces have one; the name as it is when none has)."""
    if "/" in entry:
        return entry
    found = [k for k in declared if k.split("/", 1)[1] == entry]
    if len(found) > 1:
        return None
    return found[0] if found else f"?/{entry}"


def _check_clusters(envs: list[Environment], docs: Mapping[str, Document], errors: list[SpecError]) -> None:
    """A cluster belongs to one environment: two targets of one repo in one cluster would each
    prune what the other applies. A promotesFrom chain must not loop."""
    owner: dict[str, str] = {}
    for env in sorted(envs, key=lambda e: e.name):
        for i, cluster in enumerate(env.clusters):
            if cluster in owner:
                errors.append(docs[env.name].error(["spec", "clusters", i], f"cluster {cluster!r} is already in "
                                                   f"environment {owner[cluster]!r}: a cluster serves one environment"))
            owner.setdefault(cluster, env.name)
    by_name = {e.name: e for e in envs}
    for env in envs:
        seen, at = [env.name], env.promotes_from
        while at is not None and at in by_name:
            if at in seen:
                errors.append(docs[env.name].error(["spec", "promotesFrom"],
                                                   f"promotion loops: {' -> '.join([*seen, at])}"))
                break
            seen.append(at)
            at = by_name[at].promotes_from


class UnknownEnvironment(AgentError):
    """An environment the repo does not declare was asked for."""


def environment(spec: Spec, name: str) -> Environment:
    """The environment `name` of `spec`; UnknownEnvironment (naming those there are) otherwise."""
    for env in spec.environments:
        if env.name == name:
            return env
    known = ", ".join(e.name for e in spec.environments)
    if not known:
        raise UnknownEnvironment(f"environment {name!r}: the repo declares no environments (no kind: Environment)")
    raise UnknownEnvironment(f"environment {name!r} is not declared in the repo (environments: {known})")


def environment_of_cluster(spec: Spec, cluster: str) -> Environment:
    """The environment that deploys to `cluster`; UnknownEnvironment otherwise."""
    for env in spec.environments:
        if cluster in env.clusters:
            return env
    known = ", ".join(c for e in spec.environments for c in e.clusters) or "none"
    raise UnknownEnvironment(f"cluster {cluster!r} is in no environment of the repo (clusters: {known})")


def for_environment(spec: Spec, name: str) -> Spec:
    """The Spec environment `name` deploys: its overlaid models, and the target
    "<repo target>-<name>" (its inventory, Lease and ownership labels in each of its clusters).
    The result declares no environments of its own (`environment` names it)."""
    env = environment(spec, name)
    config = dataclasses.replace(spec.config, name=f"{spec.config.name}-{name}")
    return dataclasses.replace(spec, config=config, models=env.models, environments=(), environment=name)
