"""Monitor documents -> Monitor, with the retrain Job templates their rules name (files
read by their Monitor, never applied as manifests)."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Mapping
from typing import Any, cast

from agent.errors import SpecError
from agent.spec._common import Parsed, check_namespace, is_ours, location_of, seconds_of
from agent.spec._types import Model, Monitor, MonitorRule, RepositoryConfig
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document


def declared_models(docs: list[Document], config: RepositoryConfig) -> set[str]:
    """namespace/name of every Model document that passed the schema, valid or not."""
    return {f"{d.data['metadata'].get('namespace', config.default_namespace)}/{d.data['metadata']['name']}" for d in docs}


def _template_path(raw: Any) -> str | None:
    """A job template's path as the loader keys files (normalized, from the repo root); None
    for one that leaves the repo (absolute, or through "..")."""
    if not isinstance(raw, str) or not raw or raw.startswith("/"):
        return None
    path = posixpath.normpath(raw)
    return None if path == ".." or path.startswith("../") else path


def job_template_paths(parsed: list[tuple[str, list[Document], list[SpecError]]], excluded: tuple[str, ...]) -> set[str]:
    """Files that Monitors of the repo name as retrain job templates: a template is a Job for
    the agent to start when an alert fires, so it is not applied as a manifest. Read from every
    Monitor-looking document, valid or not (an invalid Monitor's template is not a manifest either)."""
    out: set[str] = set()
    for path, docs, _ in parsed:
        if any(fnmatch.fnmatch(path, pattern) for pattern in excluded):
            continue
        for d in docs:
            spec = d.data.get("spec") if is_ours(d, "Monitor") else None
            rules = spec.get("rules") if isinstance(spec, dict) else None
            for r in rules if isinstance(rules, list) else ():
                retrain = r.get("retrain") if isinstance(r, dict) else None
                if isinstance(retrain, dict) and (t := _template_path(retrain.get("jobTemplate"))):
                    out.add(t)
    return out


def _job_template(doc: Document, at: list[str | int], raw: str, files: Mapping[str, Parsed],
                  errors: list[SpecError]) -> dict[str, Any] | None:
    """The batch/v1 Job a retrain rule names, checked: one document, a Job with a pod template
    and containers, no namespace (it runs in the model's). Errors name the field of the rule,
    or the line of the template file that is wrong."""
    field_path = [*at, "retrain", "jobTemplate"]
    path = _template_path(raw)
    if path is None:
        errors.append(doc.error(field_path, f"{raw!r} must be a path inside the repo, from its root"))
        return None
    if path not in files:
        errors.append(doc.error(field_path, f"job template {path!r} not found in the repo"))
        return None
    docs, errs = files[path]
    if errs:
        errors.extend(errs)
        return None
    if len(docs) != 1:
        errors.append(doc.error(field_path, f"job template {path!r} must hold exactly one YAML document "
                                            f"(a batch/v1 Job), found {len(docs)}"))
        return None
    t = docs[0]
    data = t.data
    if not isinstance(data, dict) or data.get("apiVersion") != "batch/v1" or data.get("kind") != "Job":
        got = f"{data.get('apiVersion')}/{data.get('kind')}" if isinstance(data, dict) else type(data).__name__
        errors.append(t.error(["kind"] if isinstance(data, dict) else [],
                              f"a job template must be a batch/v1 Job, not {got} (named by {doc.path}:{doc.line})"))
        return None
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        errors.append(t.error(["metadata"], "metadata must be a mapping"))
        return None
    if isinstance(meta, dict) and meta.get("namespace") is not None:
        errors.append(t.error(["metadata", "namespace"], "a job template takes no namespace: the Job runs in the "
                                                         "model's namespace"))
        return None
    spec = data.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(template, dict):
        errors.append(t.error(["spec", "template"], "a job template needs spec.template (the pod to run)"))
        return None
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        errors.append(t.error(["spec", "template", "spec", "containers"], "a job template needs at least one container"))
        return None
    return cast(dict[str, Any], data)


def read_monitor(doc: Document, config: RepositoryConfig, models: Mapping[str, Model], declared: set[str],
             errors: list[SpecError], files: Mapping[str, Parsed] | None = None,
             unreadable: Unreadable | None = None) -> Monitor | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    ns = meta.get("namespace", config.default_namespace)
    before = len(errors)
    check_namespace(doc, ["metadata", "namespace"], ns, config, errors)
    key = f"{ns}/{spec['model']}"
    if key in declared and key not in models:
        return None  # the Model has errors of its own; "not found" would mislead
    if key not in models and not (unreadable is not None and unreadable.may_declare_model(spec["model"])):
        errors.append(doc.error(["spec", "model"], f"Model {spec['model']!r} not found in namespace {ns!r}"))
    rules = []
    names: set[str] = set()
    for i, r in enumerate(spec["rules"]):
        if r["name"] in names:
            errors.append(doc.error(["spec", "rules", i, "name"], f"duplicate rule name {r['name']!r}"))
        names.add(r["name"])
        retrain = r.get("retrain") or {}
        job = None
        if "jobTemplate" in retrain:
            job = _job_template(doc, ["spec", "rules", i], retrain["jobTemplate"], files or {}, errors)
        cooldown = str(retrain.get("cooldown", MonitorRule.retrain_cooldown))
        if seconds_of(cooldown) <= 0:
            errors.append(doc.error(["spec", "rules", i, "retrain", "cooldown"], f"must be longer than 0, got {cooldown!r}"))
        rules.append(MonitorRule(
            name=r["name"], type=r["type"], threshold=float(r["threshold"]),
            window=r.get("window", config.monitor_window), for_=r.get("for", config.monitor_for),
            severity=r.get("severity", "warning"), action=r.get("action", "alert"),
            description=r.get("description"), quantile=float(r.get("quantile", 0.95)),
            feature=r.get("feature"), method=r.get("method", "psi"),
            retrain_job_template=_template_path(retrain.get("jobTemplate")), retrain_job=job,
            retrain_cooldown=cooldown, retrain_cooldown_seconds=seconds_of(cooldown),
        ))
    if len(errors) > before:
        return None
    return Monitor(
        name=meta["name"], namespace=ns, model=spec["model"], rules=tuple(rules),
        labels=dict(meta.get("labels", {})), location=location_of(doc),
    )
