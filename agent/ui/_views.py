"""What each page shows, as plain values for the templates: built from the board's entries and
their status documents (`Board.document`, cached per publication: the overview does no I/O per
row), the audit trail and the chart source. Nothing here is HTML: the templates escape it all."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from agent import history
from agent._http import without_userinfo
from agent.spec import Model
from agent.ui._board import Board, Published
from agent.ui._chart import ChartSource
from agent.ui._links import ForgeLinks, safe_url
from agent.ui._records import AuditReader

HEALTH = {  # state -> (symbol, word, css class): colour AND a symbol (colour-blind safe)
    "Healthy": ("✓", "Healthy", "ok"),
    "Degraded": ("⚠", "Degraded", "bad"),
    "Progressing": ("…", "Progressing", "busy"),
    "Missing": ("✗", "Missing", "bad"),
    "Unknown": ("?", "Unknown", "unknown"),
}


def health_of(state: object) -> tuple[str, str, str]:
    return HEALTH.get(str(state), ("?", str(state) or "Unknown", "unknown"))


def ago(seconds: float | None) -> str:
    """`just now`, `45s ago`, `2m ago`, `3h ago`, `2d ago`; "" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = max(0, int(seconds))
    if s < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def short(commit: object) -> str:
    return str(commit or "")[:12]


def first_line(text: object, limit: int = 200) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Row:
    model: str
    href: str
    target: str
    environment: str
    cluster: str
    stable: str
    canary: str
    traffic: str
    stable_pct: int
    health: tuple[str, str, str]
    message: str
    synced: bool
    commit: str
    age: str
    drift: tuple[str, ...]
    phase: str
    step: str


@dataclass(frozen=True)
class Head:
    """One entry's line in the header: the commit in force on it."""

    target: str
    environment: str
    cluster: str
    commit: str
    commit_url: str | None
    message: str
    author: str
    error: str
    age: str


def model_href(key: str, entry: Published) -> str:
    query = {"target": entry.target, **({"cluster": entry.cluster} if entry.cluster else {})}
    return f"/models/{quote(key, safe='/')}?{urlencode(query)}"


def traffic_of(m: dict[str, Any]) -> tuple[str, str, int]:
    """(canary version, `90% v1 / 10% v2`, stable percent) of one status document model."""
    stable = str(m.get("liveVersion") or m.get("version") or "-")
    canary = m.get("canary") or None
    rollout = m.get("rollout") or {}
    if rollout.get("phase") == "Progressing" and isinstance(rollout.get("traffic"), int) and rollout.get("version"):
        version, pct = str(rollout["version"]), int(rollout["traffic"])
        stable = str(rollout.get("stable") or stable)
    elif canary and isinstance(canary.get("traffic"), int):
        version, pct = str(canary.get("version")), int(canary["traffic"])
    else:
        return "", f"100% {stable}", 100
    pct = min(100, max(0, pct))
    if pct >= 100:
        return version, f"100% {version}", 0
    return version, f"{100 - pct}% {stable} / {pct}% {version}", 100 - pct


def overview(board: Board, now: float) -> tuple[list[Head], list[Row]]:
    heads: list[Head] = []
    rows: list[Row] = []
    for entry in board.entries():
        doc = board.document(entry)
        sync = doc.get("lastSync") or {}
        age = ago(sync["ageSeconds"] + (now - entry.at)) if isinstance(sync.get("ageSeconds"), int) else ""
        commit = str(sync.get("commit") or (doc.get("lastApply") or {}).get("commit") or "")
        rev = doc.get("revision") or {}
        heads.append(Head(entry.target, entry.environment, entry.cluster, short(rev.get("commit")), None,
                          first_line(rev.get("message")), str(rev.get("author") or ""), first_line(entry.error, 300),
                          age))
        for m in doc["models"]:
            key = f"{m['namespace']}/{m['name']}"
            canary, traffic, stable_pct = traffic_of(m)
            rollout = m.get("rollout") or {}
            step = f"step {rollout['step']}/{rollout['steps']}" if rollout.get("step") and rollout.get("steps") else ""
            rows.append(Row(key, model_href(key, entry), entry.target, entry.environment, entry.cluster,
                            str(m.get("liveVersion") or m.get("version") or "-"), canary, traffic, stable_pct,
                            health_of(m.get("health")), first_line(m.get("message")), bool(m.get("synced")),
                            short(commit), age, tuple(entry.drift.get(key, ())), str(rollout.get("phase") or ""),
                            step))
    return heads, rows


# --- the model page -----------------------------------------------------------------------------

def _bounds(gate: Any) -> str:
    parts = ([f"≥ {gate.min:g}"] if gate.min is not None else []) + ([f"≤ {gate.max:g}"] if gate.max is not None else [])
    return " and ".join(parts)


def versions(model: Model, new: str | None) -> list[dict[str, Any]]:
    out = []
    for v in model.versions.values():
        roles = [r for r, on in (("stable", v.version == model.stable),
                                 ("canary", model.canary is not None and model.canary.version == v.version),
                                 ("rollout", new == v.version and v.version != model.stable)) if on]
        reg = v.registry
        registry = ""
        if reg is not None:
            pin = (f"version {reg.version}" if reg.version else f"alias {reg.alias}" if reg.alias
                   else f"stage {reg.stage}" if reg.stage else "")
            registry = " ".join(p for p in (reg.kind, reg.name, pin) if p)
        gates = []
        for gate in model.gates:
            value = v.evaluation.get(gate.metric)
            ok = (value is not None and (gate.min is None or value >= gate.min)
                  and (gate.max is None or value <= gate.max))
            gates.append({"metric": gate.metric, "value": "-" if value is None else f"{value:g}",
                          "bounds": _bounds(gate), "ok": ok, "known": value is not None})
        gated = {g.metric for g in model.gates}
        others = [{"metric": k, "value": f"{val:g}"} for k, val in sorted(v.evaluation.items()) if k not in gated]
        out.append({"version": v.version, "roles": roles, "uri": without_userinfo(v.uri), "registry": registry,
                    "resolved": v.resolved or "", "digest": v.digest or "", "gates": gates, "evaluation": others})
    return out


def _clock(at: object) -> str:
    if isinstance(at, int | float) and not isinstance(at, bool):
        try:
            return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))
        except (OverflowError, OSError, ValueError):  # not finite, or not a time
            return "-"
    text = str(at or "")
    if re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}", text):
        return text[:19].replace("T", " ") + "Z"  # the audit log's ISO times, to the second
    return text


def _checks(raw: object) -> list[dict[str, Any]]:
    out = []
    for c in raw if isinstance(raw, list) else []:
        if not isinstance(c, dict):
            continue
        value = c.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = f"{value:.4g}" if math.isfinite(value) else "+Inf" if value > 0 else "-Inf" if value < 0 else "-"
        else:
            shown = str(value or "-")[:40]
        ok = c.get("ok")
        verdict = ("✓", "pass", "ok") if ok is True else ("✗", "fail", "bad") if ok is False else ("…", "not judged", "unknown")
        out.append({"name": str(c.get("name", "")), "value": shown, "verdict": verdict,
                    "message": first_line(c.get("message"))})
    return out


def timeline(state: Any, records: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rollout's transitions (its state's history) with the checks the audit log recorded
    for each (the `rollout` record of the same transition and step)."""
    audits = [r for r in records if r.get("event") == "rollout" and r.get("model") == key
              and r.get("version") in (state.version, None)]
    used: set[int] = set()
    steps = []
    for h in state.history:
        step = int(h.get("step") or 0) + 1
        checks: list[dict[str, Any]] = []
        for i, r in enumerate(audits):
            if i not in used and r.get("transition") == h.get("kind") and r.get("step") == step:
                used.add(i)
                checks = _checks(r.get("checks"))
                break
        steps.append({"kind": str(h.get("kind") or h.get("to") or ""), "step": step, "traffic": h.get("traffic"),
                      "at": _clock(h.get("at")), "reason": first_line(h.get("reason"), 300), "checks": checks})
    return steps


def model_page(board: Board, charts: ChartSource, audit: AuditReader, forge: ForgeLinks | None, key: str,
               target: str | None, cluster: str | None, now: float) -> dict[str, Any] | None:
    having = [e for e in board.entries() if any(m.key == key for m in e.desired.spec.models)]
    entry = next((e for e in having if (target is None or e.target == target)
                  and (cluster is None or e.cluster == cluster)), None)
    if entry is None:
        return None
    spec = entry.desired.spec
    model = next(m for m in spec.models if m.key == key)
    doc = next(m for m in board.document(entry)["models"] if f"{m['namespace']}/{m['name']}" == key)
    state = entry.rollouts.states.get(key)
    trail = audit.trail(entry.audit_log)
    records = [r for r in trail.records if r.get("target") in (entry.target, None)
               and (not entry.cluster or r.get("cluster") in (entry.cluster, None))]
    rollout = None
    if state is not None:
        monitors = [m for m in spec.monitors if m.model_key == key]
        shown = {"message": "", "hold": None, "step": None, "steps": None, "checks": [], **(doc.get("rollout") or {})}
        plan = list(model.rollout.steps or (100,)) if model.rollout and state.strategy != "blueGreen" else []
        rollout = {"state": shown, "checks": _checks(shown.get("checks")), "plan": plan, "current": state.step,
                   "phase": state.phase, "timeline": timeline(state, records, key),
                   "charts": charts.charts(entry.prometheus, model, monitors, spec.config.metrics, state, now)}
    ns, _, name = key.partition("/")
    deployments = history.deployments(records, name=name, namespace=ns, target=None)[:20]
    drift_events = [{"at": _clock(r.get("time")), "object": _ref(r.get("object")),
                     "fields": ", ".join(str(f) for f in r.get("drift") or [])[:300], "result": str(r.get("result") or "")}
                    for r in reversed(records) if r.get("event") == "object" and r.get("model") == key
                    and r.get("drift") and not r.get("dry_run")][:20]
    canary, traffic, stable_pct = traffic_of(doc)
    return {
        "key": key, "entry": entry, "others": [(e, model_href(key, e)) for e in having if e is not entry],
        "health": health_of(doc.get("health")), "message": first_line(doc.get("message"), 400),
        "synced": bool(doc.get("synced")), "traffic": traffic, "stable_pct": stable_pct, "canary": canary,
        "versions": versions(model, state.version if state else None), "rollout": rollout,
        "deployments": [_deployment(d, forge) for d in deployments], "drift_now": entry.drift.get(key, ()),
        "drift_events": drift_events,
        "objects": [{**o, "h": health_of(o.get("health"))} for o in doc.get("objects") or []], "audit_note": trail.error,
    }


def _ref(obj: object) -> str:
    if isinstance(obj, dict):
        return f"{obj.get('kind', '')}/{obj.get('name', '')}"
    return str(obj or "")


def _deployment(d: dict[str, Any], forge: ForgeLinks | None) -> dict[str, Any]:
    pr = d.get("pullRequest")
    return {"time": _clock(d.get("time")), "commit": short(d.get("commit")),
            "commit_url": forge.commit(d.get("commit")) if forge else None,
            "author": str(d.get("author") or ""), "message": first_line(d.get("message")),
            "pull": str(pr or ""), "pull_url": (forge.pull(pr) if forge else safe_url(pr)) if pr else None,
            "versions": history.versions_text(d), "registry": ", ".join(
                f"{r.get('version')} = registry version {r.get('registryVersion')}" for r in d.get("registry") or []
                if r.get("registryVersion") not in (None, "", "None")),
            "rollout": history.rollout_text(d), "result": str(d.get("result") or ""),
            "events": [{"at": _clock(e.get("time")), "text": first_line(e.get("text"), 300)}
                       for e in d.get("events") or []][-12:]}


def audit_page(board: Board, audit: AuditReader, page: int, per_page: int = 50, *, event: str | None = None,
               model: str | None = None) -> dict[str, Any]:
    """The audit log newest first, a page of it; only the records of `event` and/or `model` when given."""
    paths = list(dict.fromkeys(e.audit_log for e in board.entries() if e.audit_log is not None))
    trail = audit.trail(paths[0] if paths else None)
    newest = [r for r in reversed(trail.records) if (not event or r.get("event") == event)
              and (not model or r.get("model") == model)]
    pages = max(1, math.ceil(len(newest) / per_page))
    page = min(max(1, page), pages)
    shown = newest[(page - 1) * per_page: page * per_page]
    filters = {k: v for k, v in (("event", event), ("model", model)) if v}
    return {"trail": trail, "page": page, "pages": pages, "records": [_record(r) for r in shown],
            "others": paths[1:], "matching": len(newest), "filters": filters,
            "newer": f"/audit?{urlencode({**filters, 'page': page - 1})}" if page > 1 else None,
            "older": f"/audit?{urlencode({**filters, 'page': page + 1})}" if page < pages else None,
            "events": sorted({str(r.get("event", "")) for r in trail.records})}


_SUMMARY = ("target", "environment", "cluster", "model", "transition", "result", "commit", "action", "outcome",
            "message", "reason")


def _record(r: dict[str, Any]) -> dict[str, Any]:
    summary = [(k, short(r[k]) if k == "commit" else first_line(r[k], 120)) for k in _SUMMARY
               if isinstance(r.get(k), str | int) and r.get(k) not in ("", None)]
    if isinstance(r.get("object"), dict):
        summary.append(("object", _ref(r["object"])))
    rest = {k: v for k, v in r.items() if k not in ("hash", "prev_hash")}
    return {"seq": r.get("seq", ""), "time": _clock(r.get("time")), "event": str(r.get("event", "")),
            "event_href": f"/audit?{urlencode({'event': str(r.get('event', ''))})}",
            "agent": str(r.get("agent") or ""), "summary": summary,
            "detail": json.dumps(rest, indent=1, sort_keys=True, default=str)[:4000]}
