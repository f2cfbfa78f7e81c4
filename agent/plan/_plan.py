"""Desired vs current objects -> Plan (per-object actions + model-level summary). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.plan._fields import changed_paths
from agent.plan._redact import redact
from agent.plan._types import Action, ModelChange, ObjectReport, Plan, RolloutNote
from agent.render import (
    CANARY_ANNOTATION,
    CANARY_REGISTRY_ANNOTATION,
    MODEL_LABEL,
    SPEC_HASH_ANNOTATION,
    STABLE_ANNOTATION,
    STABLE_REGISTRY_ANNOTATION,
    TRAFFIC_ANNOTATION,
    VERSION_LABEL,
    object_key,
    parse_registry_annotation,
)

_HASH_FIELD = f"metadata.annotations.{SPEC_HASH_ANNOTATION}"


def model_of(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata", {})
    name = (meta.get("labels") or {}).get(MODEL_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None


def change(action: Action, before: dict[str, Any] | None, after: dict[str, Any] | None,
           fields: list[str] | None = None, *, drift: dict[str, str] | None = None,
           owner_conflict: str = "") -> ObjectReport:
    """One ObjectReport; before/after are redacted here so no caller can forget."""
    ref_obj = after if after is not None else before
    assert ref_obj is not None
    _group, kind, ns, name = object_key(ref_obj)
    b = redact(before) if before is not None else None
    a = redact(after) if after is not None else None
    if fields is None:
        fields = changed_paths(b, a) if action == "update" else []
    fields = [f for f in fields if f != _HASH_FIELD]
    return ObjectReport(
        action=action, api_version=str(ref_obj.get("apiVersion", "")), kind=kind, namespace=ns,
        name=name, model=model_of(ref_obj), before=b, after=a, changed_fields=fields,
        drift=dict(drift or {}), owner_conflict=owner_conflict,
    )


def diff_objects(desired: Iterable[dict[str, Any]], current: Iterable[dict[str, Any]]) -> list[ObjectReport]:
    """Compare two complete sets of rendered objects (the offline diff)."""
    want = {object_key(o): o for o in desired}
    have = {object_key(o): o for o in current}
    out: list[ObjectReport] = []
    for key in sorted(set(want) | set(have)):
        after, before = want.get(key), have.get(key)
        if before is None:
            out.append(change("create", None, after))
        elif after is None:
            out.append(change("delete", before, None))
        elif before == after:
            out.append(change("unchanged", before, after))
        else:
            out.append(change("update", before, after))
    return out


def build_plan(changes: list[ObjectReport], base: dict[str, str] | None = None,
               revision: dict[str, str] | None = None, rollouts: dict[str, RolloutNote] | None = None,
               notes: dict[str, list[str]] | None = None) -> Plan:
    """The plan of `changes`; `rollouts` and `notes` (model key -> lines for a reviewer, e.g.
    Git's canary traffic that a rollout does not apply) only of the models the plan has."""
    models = summarize(changes)
    keys = {m.key for m in models}
    running = {k: v for k, v in (rollouts or {}).items() if k in keys}
    said = {k: list(v) for k, v in (notes or {}).items() if k in keys and v}
    return Plan(objects=changes, models=models, base=base or {}, revision=revision or {}, rollouts=running,
                notes=said)


# --- model-level summary -------------------------------------------------------------------

def _primary(objs: list[dict[str, Any]]) -> dict[str, Any] | None:
    for o in objs:
        if STABLE_ANNOTATION in (o.get("metadata", {}).get("annotations") or {}):
            return o
    return None


def _facts(objs: list[dict[str, Any]]) -> dict[str, str]:
    facts: dict[str, str] = {}
    primary = _primary(objs)
    if primary is not None:
        ann = primary["metadata"].get("annotations", {})
        facts["version"] = ann.get(STABLE_ANNOTATION, "?")
        facts["canary_version"] = ann.get(CANARY_ANNOTATION, "none")
        facts["canary"] = ann.get(TRAFFIC_ANNOTATION, "0") + "%"
        facts["backend"] = "kserve" if primary["kind"] == "InferenceService" else "kubernetes"
        facts["stable_registry"] = ann.get(STABLE_REGISTRY_ANNOTATION, "")
        facts["canary_registry"] = ann.get(CANARY_REGISTRY_ANNOTATION, "")
    facts["scaling"] = _scaling(objs)
    return facts


def _scaling(objs: list[dict[str, Any]]) -> str:
    lo = hi = 0
    auto = False
    for o in objs:
        spec = o.get("spec") or {}
        if o.get("kind") == "InferenceService":
            p = spec.get("predictor", {})
            lo, hi = p.get("minReplicas", 1), p.get("maxReplicas", 1)
            auto = lo != hi
        elif o.get("kind") == "HorizontalPodAutoscaler":
            auto = True
            lo += spec.get("minReplicas", 1)
            hi += spec.get("maxReplicas", 1)
        elif o.get("kind") == "Deployment" and "replicas" in spec:
            lo += spec["replicas"]
            hi += spec["replicas"]
    if not lo and not hi:
        return ""
    return f"autoscaling {lo}-{hi}" if auto else f"replicas {lo}"


def _artifact_uri(objs: list[dict[str, Any]], version: str) -> str | None:
    """The artifact URI the rendered objects serve for version entry `version`: the
    InferenceService's storageUri or the Deployment's MODEL_URI. None when no object serves it
    (KServe's stable behind a canary lives in the previous revision, not in the spec)."""
    for o in objs:
        if (o.get("metadata", {}).get("labels") or {}).get(VERSION_LABEL) != version:
            continue
        spec = o.get("spec") or {}
        if o.get("kind") == "InferenceService":
            uri = (spec.get("predictor") or {}).get("model", {}).get("storageUri")
            if uri:
                return str(uri)
        elif o.get("kind") == "Deployment":
            for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
                for var in container.get("env") or []:
                    if var.get("name") == "MODEL_URI" and var.get("value"):
                        return str(var["value"])
    return None


def _registry_lines(fb: dict[str, str], fa: dict[str, str], after: list[dict[str, Any]]) -> list[str]:
    """`alias champion: 12 -> 13 (s3://…)` for a serving version whose alias or stage now
    names another immutable version: the annotations are otherwise the only sign of it. Nothing
    for a pinned version (the version line says it) or a live object without the annotation."""
    lines: list[str] = []
    for role, prefix in (("stable", ""), ("canary", "canary ")):
        b = parse_registry_annotation(fb.get(f"{role}_registry"))
        a = parse_registry_annotation(fa.get(f"{role}_registry"))
        if b is None or a is None or b.reference != a.reference or a.selector == "version" or b.version == a.version:
            continue
        uri = _artifact_uri(after, fa["version"] if role == "stable" else fa["canary_version"])
        lines.append(f"{prefix}{a.selector} {a.value}: {b.version} -> {a.version}" + (f" ({uri})" if uri else ""))
    return lines


def _rule_names(objs: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for o in objs:
        if o.get("kind") == "PrometheusRule":
            for group in o.get("spec", {}).get("groups", []):
                for rule in group.get("rules", []):
                    out[str(rule.get("alert"))] = repr(sorted(rule.items()))
    return out


def summarize(changes: list[ObjectReport]) -> list[ModelChange]:
    """What a reviewer wants first: per model, the version/canary/scaling/monitor changes."""
    groups: dict[str, list[ObjectReport]] = {}
    for c in changes:
        if c.model:
            groups.setdefault(c.model, []).append(c)
    out: list[ModelChange] = []
    for key in sorted(groups):
        ns, name = key.split("/", 1)
        items = groups[key]
        before = [c.before for c in items if c.before is not None]
        after = [c.after for c in items if c.after is not None]
        out.append(_model_change(ns, name, before, after, items))
    return out


def _model_change(ns: str, name: str, before: list[dict[str, Any]], after: list[dict[str, Any]],
                  items: list[ObjectReport]) -> ModelChange:
    fb, fa = _facts(before), _facts(after)
    lines: list[str] = []
    had, has = _primary(before) is not None, _primary(after) is not None
    if has and not had:
        canary = f", canary {fa['canary_version']} at {fa['canary']}" if fa["canary_version"] != "none" else ""
        lines.append(f"new model: version {fa['version']}{canary} ({fa['backend']}, {fa['scaling']})")
        if canary and fa["backend"] == "kserve":
            lines.append("warning: KServe splits traffic only after a revision has rolled out at 100%; a new "
                         "InferenceService serves the canary's artifact to all traffic: roll out the stable "
                         "version first, then add the canary")
    elif had and not has:
        lines.append(f"model removed (was version {fb['version']})")
    elif had and has:
        if fb["version"] != fa["version"]:
            lines.append(f"version {fb['version']} -> {fa['version']}")
        if fb["canary_version"] != fa["canary_version"]:
            lines.append(f"canary version {fb['canary_version']} -> {fa['canary_version']}")
        if fb["canary"] != fa["canary"]:
            lines.append(f"canary {fb['canary']} -> {fa['canary']}")
        if fb["backend"] != fa["backend"]:
            lines.append(f"backend {fb['backend']} -> {fa['backend']}")
        if fb["scaling"] != fa["scaling"]:
            lines.append(f"{fb['scaling'] or 'no scaling'} -> {fa['scaling'] or 'no scaling'}")
        lines.extend(_registry_lines(fb, fa, after))
    rb, ra = _rule_names(before), _rule_names(after)
    added = sorted(set(ra) - set(rb))
    removed = sorted(set(rb) - set(ra))
    modified = sorted(k for k in set(ra) & set(rb) if ra[k] != rb[k])
    if added:
        lines.append("monitor rules added: " + ", ".join(added))
    if removed:
        lines.append("monitor rules removed: " + ", ".join(removed))
    if modified:
        lines.append("monitor rules changed: " + ", ".join(modified))
    counts: dict[str, int] = {}
    for c in items:
        if c.action != "unchanged":
            counts[c.action] = counts.get(c.action, 0) + 1
    if counts:
        verbs = {"create": "created", "update": "updated", "delete": "deleted"}
        lines.append("objects " + ", ".join(f"{n} {verbs[a]}" for a, n in sorted(counts.items())))
    drifted = [c for c in items if c.drift]
    for c in drifted:
        who = ", ".join(sorted(set(c.drift.values())))
        lines.append(f"drift on {c.ref}: {', '.join(sorted(c.drift))} changed by {who}")
    if has and not had:
        status = "created"
    elif had and not has:
        status = "deleted"
    else:
        status = "updated" if counts else "unchanged"
    return ModelChange(namespace=ns, name=name, status=status, changes=lines)  # type: ignore[arg-type]
