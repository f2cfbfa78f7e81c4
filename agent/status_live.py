"""`agent status` when the local checkout does not validate: what runs, from the cluster alone.

The target's inventory (what the agent applied, the last apply, the last sync, a refused
commit) and the objects carrying its labels are read as a reconcile reads them; each model's
versions come from the annotations the agent put on its serving object and the canary traffic
as that object serves it (agent.rollout.live_canary_of, as the rollout guard reads it), its
health from the objects, its rollout from the stored state. Whether the cluster is synced with
Git cannot be told without a valid commit: `synced` is null. Reads only; never writes."""

from __future__ import annotations

import json
import time
from typing import Any

from agent import health
from agent.cluster import INVENTORY_NAMESPACE, LAST_APPLY, LAST_INVALID, Cluster, ClusterError, load_rollouts
from agent.engine import ENDED_BADLY, checks_json, ended_badly, last_sync, observe
from agent.errors import AgentError, ValidationFailed
from agent.plan import model_of
from agent.render import STABLE_ANNOTATION, ref
from agent.rollout import RolloutState, live_canary_of

_SERVING = ("InferenceService", "Service")  # the object whose annotations say which versions serve


def local_problems(exc: ValidationFailed, limit: int = 50) -> dict[str, Any]:
    """The checkout's problems as a note on the live view: how many, the first `limit`."""
    return {"count": len(exc.errors), "revision": exc.revision or None,
            "errors": [str(e) for e in exc.errors[:limit]]}


def live_status(cluster: Cluster, target: str, problems: dict[str, Any],
                inventory_namespace: str = INVENTORY_NAMESPACE) -> dict[str, Any]:
    """The status document of `target` from the cluster alone (model_status's shape; `synced`
    null), with `localProblems`."""
    observed = observe(cluster, [], target, inventory_namespace)
    annotations = observed.inventory.annotations
    last = json.loads(annotations.get(LAST_APPLY, "{}") or "{}")
    failed_refs = set(last.get("failed") or {})
    now = time.time()
    rollouts = _rollouts(cluster, target, inventory_namespace)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for obj in observed.live.values():
        key = model_of(obj)
        if key is not None:
            by_model.setdefault(key, []).append(obj)
    models = []
    for key, objects in sorted(by_model.items()):
        namespace, name = key.split("/", 1)
        objects.sort(key=lambda o: (o["kind"], o["metadata"]["name"]))
        serving = next((o for kind in _SERVING for o in objects
                        if o["kind"] == kind and o["metadata"]["name"] == name), None)
        meta = (serving or {}).get("metadata") or {}
        notes = meta.get("annotations") or {}
        verdicts = [health.of(o) for o in objects]
        overall = health.worst(verdicts)
        seen = live_canary_of(serving, "kserve" if serving is not None and serving["kind"] == "InferenceService"
                              else "kubernetes")
        canary = {"version": seen.version, "traffic": seen.traffic} if seen.version is not None else None
        entry: dict[str, Any] = {
            "namespace": namespace, "name": name, "version": notes.get(STABLE_ANNOTATION, "-"), "canary": canary,
            "synced": None, "health": overall.state, "message": overall.message,
            "objects": [{"object": f"{o['kind']}/{o['metadata']['name']}", "health": h.state, "message": h.message}
                        for o, h in zip(objects, verdicts, strict=True)],
            "lastApply": {"commit": last.get("commit", ""), "time": last.get("time", ""),
                          "result": "failed" if any(ref(o) in failed_refs for o in objects)
                          else last.get("result", "never")},
        }
        state = rollouts.get(key)
        if state is not None:
            entry["rollout"] = _rollout(state, now)
            if canary is not None and state.version == canary["version"]:
                canary["traffic"] = state.traffic  # what the controller keeps, as model_status shows it
            if state.phase in ENDED_BADLY:
                entry.update(health="Degraded", message=ended_badly(entry["rollout"]))
        models.append(entry)
    invalid = json.loads(annotations.get(LAST_INVALID, "{}") or "{}")
    return {
        "target": target,
        "revision": None,
        "localProblems": problems,
        "lastApply": last,
        "lastSync": last_sync(annotations, now),
        "invalidCommit": invalid or None,
        "models": models,
    }


def _rollouts(cluster: Cluster, target: str, namespace: str) -> dict[str, RolloutState]:
    """The stored rollout states that parse (one that does not is left out: without the repo's
    declared rollout it cannot be judged here); none when they may not be read."""
    try:
        stored = load_rollouts(cluster, target, namespace)
    except (ClusterError, AgentError):
        return {}
    found = {}
    for key, raw in stored.states.items():
        try:
            found[key] = RolloutState.from_json(raw)
        except ValueError:
            continue
    return found


def _rollout(state: RolloutState, now: float) -> dict[str, Any]:
    """rollout_status's shape, from the state alone (no step count: that is the repo's)."""
    return {"model": state.model, "strategy": state.strategy, "phase": state.phase, "step": state.step + 1,
            "steps": None, "traffic": state.traffic, "version": state.version,
            "message": state.message or state.phase, "stable": state.stable,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.step_started)),
            "sinceSeconds": max(0, int(now - state.step_started)), "failedChecks": state.failed_checks,
            "checks": checks_json(state)}
