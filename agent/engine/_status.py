"""`agent status`: per model, is the cluster synced with Git, is it healthy, how did the last
apply go, where does its rollout stand. Reads with the same LISTs as a reconcile (plus one GET
of the rollout states when the repo has rollouts); never writes."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent import health
from agent.cluster import INVENTORY_NAMESPACE, LAST_APPLY, LAST_INVALID, LAST_SYNC, Cluster
from agent.desired import Desired, revision_info, with_traffic
from agent.engine._judge import read_rollouts
from agent.engine._view import observe
from agent.plan import model_of
from agent.render import SPEC_HASH_ANNOTATION, STABLE_ANNOTATION, ObjectKey, object_key, ref
from agent.rollout import InvalidState, LiveRollouts, RolloutState, rollout_note, traffic_note
from agent.spec import Model


def rollout_status(state: RolloutState, desired: Desired, key: str, now: float, *,
                   models: Mapping[str, Model] | None = None) -> dict[str, Any]:
    """One rollout for people and scripts: the plan's note plus when its step began, the last
    analysis (each check's value and verdict), why its step holds (`hold`: kind, reason, since,
    seconds; null while it is judged) and notes (Git's canary traffic that the rollout does not
    apply). `models`: desired's models by key, when the caller has them (one lookup per rollout,
    not one per rollout and model)."""
    if models is None:
        models = {m.key: m for m in desired.spec.models}
    out: dict[str, Any] = {"model": key, "strategy": state.strategy}
    model = models.get(key)
    if model is not None:
        out.update(rollout_note(state, model, now).to_json())
    else:
        out.update(phase=state.phase, step=state.step + 1, steps=None, traffic=state.traffic, version=state.version,
                   message=f"{state.message} (the model is no longer in the repo)".strip())
    out.update(
        stable=state.stable,
        since=_time(state.step_started),
        sinceSeconds=max(0, int(now - state.step_started)),
        failedChecks=state.failed_checks,
        checks=checks_json(state),
        hold=_hold(state, now),
        notes=[note] if model is not None and (note := traffic_note(model, state)) is not None else [],
    )
    return out


def _hold(state: RolloutState, now: float) -> dict[str, Any] | None:
    hold = state.hold if state.phase == "Progressing" else None
    if hold is None:
        return None
    return {"kind": hold.kind, "reason": hold.reason, "since": _time(hold.since),
            "seconds": max(0, int(now - hold.since))}


def _time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def checks_json(state: RolloutState) -> list[dict[str, Any]]:
    """The last analysis of a rollout: each check's value and verdict."""
    return [{"name": c.name, "value": _number(c.value), "ok": c.ok, "message": c.message} for c in state.last_checks]


def invalid_status(held: InvalidState) -> dict[str, Any]:
    """A stored state that may not steer (agent.rollout.judge_stored), in the shape of
    rollout_status: phase Invalid, no step, the traffic held and why."""
    return {"model": held.model, "strategy": "-", "phase": "Invalid", "step": None, "steps": None,
            "traffic": held.traffic, "version": held.version, "message": held.message, "stable": None,
            "since": None, "sinceSeconds": None, "failedChecks": None, "checks": [], "hold": None, "notes": []}


def _number(value: float | None) -> float | str | None:
    """JSON has no Infinity (a p95 in the +Inf bucket): written as a string, as the store does."""
    if value is not None and value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return value


def model_status(desired: Desired, cluster: Cluster, inventory_namespace: str = INVENTORY_NAMESPACE, *,
                 rollouts: LiveRollouts | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`rollouts`: the target's rollout states as read by the caller (default: read here; `warn`
    hears why they could not be). A model at its rollout's step is synced: that traffic is
    what the controller keeps."""
    # the rollout traffic changes no object's kind or namespace: observe first, so judging a
    # stored state finds the live canary among the objects listed
    observed = observe(cluster, desired.objects, desired.spec.config.name, inventory_namespace)
    if rollouts is None:
        rollouts = read_rollouts(cluster, desired, inventory_namespace, live=observed.live)
        if rollouts.warning and warn is not None:
            warn(rollouts.warning)
    return status_document(desired, observed.live, observed.inventory.annotations, rollouts, time.time())


def status_document(desired: Desired, live: Mapping[ObjectKey, dict[str, Any]], annotations: Mapping[str, str],
                    rollouts: LiveRollouts, now: float) -> dict[str, Any]:
    """The `agent status` document of `desired` against `live` (the objects by key), the
    inventory's `annotations` and the target's `rollouts`: pure, so the controller builds it
    from its watch cache (the web UI's board) with no request."""
    desired = with_traffic(desired, rollouts.traffic)
    last = json.loads(annotations.get(LAST_APPLY, "{}") or "{}")
    by_model: dict[str, list[dict[str, Any]]] = {}
    for o in desired.objects:
        key = model_of(o)
        if key is not None:
            by_model.setdefault(key, []).append(o)
    failed_refs = set(last.get("failed") or {})
    by_key = {m.key: m for m in desired.spec.models}
    models = []
    for model in desired.spec.models:
        mine = by_model.get(model.key, [])
        parts = []
        verdicts = []
        synced = True
        live_version: str | None = None  # what serves: the stable version the live objects say
        for o in mine:
            seen = live.get(object_key(o))
            if seen is not None and live_version is None:
                live_version = (seen["metadata"].get("annotations") or {}).get(STABLE_ANNOTATION)
            if seen is None or (seen["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) != o["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
                synced = False
            h = health.of(seen)
            verdicts.append(h)
            parts.append({"object": f"{o['kind']}/{o['metadata']['name']}", "health": h.state, "message": h.message})
        overall = health.worst(verdicts)
        failed = any(ref(o) in failed_refs for o in mine)
        entry: dict[str, Any] = {
            "namespace": model.namespace,
            "name": model.name,
            "version": model.stable,
            "liveVersion": live_version if isinstance(live_version, str) else None,
            "canary": {"version": model.canary.version, "traffic": model.canary.traffic} if model.canary else None,
            "synced": synced,
            "health": overall.state,
            "message": overall.message,
            "objects": parts,
            "lastApply": {"commit": last.get("commit", ""), "time": last.get("time", ""),
                          "result": "failed" if failed else last.get("result", "never")},
        }
        state = rollouts.states.get(model.key)
        held = rollouts.invalid.get(model.key)
        if held is not None:  # its traffic is held, waiting for a human: not Healthy whatever the objects say
            entry.update(health="Degraded", message=held.message, rollout=invalid_status(held))
        elif state is not None:  # only where a rollout is on record: other models' documents keep their shape
            entry["rollout"] = rollout_status(state, desired, model.key, now, models=by_key)
            if state.phase in ENDED_BADLY:  # the new version lost its traffic: not Healthy, whatever the objects say
                entry.update(health="Degraded", message=ended_badly(entry["rollout"]))
        models.append(entry)
    invalid = json.loads(annotations.get(LAST_INVALID, "{}") or "{}")
    return {
        "target": desired.spec.config.name,
        "revision": revision_info(desired.revision),
        "lastApply": last,
        "lastSync": last_sync(annotations, now),
        "invalidCommit": invalid or None,  # a commit the controller refused; the last good one stays applied
        "models": models,
    }


ENDED_BADLY = ("Aborted", "RolledBack")  # the rollout took the new version's traffic away until Git changes


def ended_badly(rollout: dict[str, Any]) -> str:
    """`rollout rolled back at step 1/3: error-rate 0.2 > 0.05`, `rollout aborted by alice ...`."""
    message = str(rollout.get("message") or rollout.get("phase") or "")
    return message if message.startswith("rollout") else f"rollout {message}"


def last_sync(annotations: Mapping[str, str], now: float) -> dict[str, Any] | None:
    """The inventory's last-sync mark (agent.cluster.sync_mark) with its age in seconds; None
    when there is none or it does not read as one (an older agent, a hand edit)."""
    try:
        mark = json.loads(annotations.get(LAST_SYNC, "") or "null")
        if not isinstance(mark, dict):
            return None
        at = calendar.timegm(time.strptime(str(mark["time"]), "%Y-%m-%dT%H:%M:%SZ"))
    except (ValueError, KeyError, OverflowError):
        return None
    out = {k: str(mark[k]) for k in ("commit", "time", "by", "source") if isinstance(mark.get(k), str)}
    return {**out, "ageSeconds": max(0, int(now - at))}


def status_ok(status: dict[str, Any], allow_unknown: bool = False) -> bool:
    """`agent status` exits 0 only when every model is synced and Healthy (Unknown too with
    --allow-unknown: no controller reports on it, e.g. no KServe) and no commit was refused."""
    accepted = ("Healthy", "Unknown") if allow_unknown else ("Healthy",)
    healthy = all(m["synced"] and m["health"] in accepted for m in status["models"])
    return healthy and not status.get("invalidCommit")


SETTLED = ("Healthy", "Degraded")  # states that waiting will not change by itself


def unsettled(status: dict[str, Any], allow_unknown: bool = False) -> list[str]:
    """Models still Progressing, or Unknown (no controller has reported on them yet) unless
    Unknown is accepted (a cluster without the KServe controller never reports)."""
    settled = SETTLED + (("Unknown",) if allow_unknown else ())
    return [f"{m['namespace']}/{m['name']}" for m in status["models"] if m["health"] not in settled]


def wait_healthy(desired: Desired, cluster: Cluster, timeout: float, interval: float = 1.0,
                 inventory_namespace: str = INVENTORY_NAMESPACE, *, allow_unknown: bool = True,
                 progress: Callable[[dict[str, Any], list[str]], None] | None = None,
                 select: Callable[[dict[str, Any]], bool] | None = None,
                 status_of: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Poll status until every model has settled: Healthy or Degraded (waiting longer will
    not help: the caller reports it); Unknown too when `allow_unknown` (the default for
    library callers such as the demo; `agent apply --wait` accepts it only with
    `--allow-unknown`). `status["unsettled"]` names the models still pending at the timeout;
    `progress(status, pending)` is called after every poll; `select(model)` keeps only the
    models it accepts (an apply of some models waits for those); `status_of`: what takes one status
    (default model_status)."""
    take = model_status if status_of is None else status_of
    deadline = time.monotonic() + timeout
    while True:
        status = take(desired, cluster, inventory_namespace)
        if select is not None:
            status["models"] = [m for m in status["models"] if select(m)]
        pending = unsettled(status, allow_unknown)
        if progress is not None:
            progress(status, pending)
        if not pending or time.monotonic() >= deadline:
            status["timedOut"] = bool(pending)
            status["unsettled"] = pending
            status["degraded"] = [f"{m['namespace']}/{m['name']}" for m in status["models"] if m["health"] == "Degraded"]
            return status
        time.sleep(interval)
