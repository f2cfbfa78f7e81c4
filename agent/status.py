"""`agent status`: per model, is the cluster synced with Git, is it healthy, how did the last
apply go. Reads with the same LISTs as a reconcile; never writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from agent import health
from agent.cluster import INVENTORY_NAMESPACE, LAST_APPLY, LAST_INVALID, Cluster
from agent.pipeline import Desired, revision_info
from agent.plan import model_of
from agent.reconcile import observe
from agent.render import SPEC_HASH_ANNOTATION, object_key, ref


def model_status(desired: Desired, cluster: Cluster, inventory_namespace: str = INVENTORY_NAMESPACE) -> dict[str, Any]:
    observed = observe(cluster, desired.objects, desired.spec.config.name, inventory_namespace)
    last = json.loads(observed.inventory.annotations.get(LAST_APPLY, "{}") or "{}")
    by_model: dict[str, list[dict[str, Any]]] = {}
    for o in desired.objects:
        key = model_of(o)
        if key is not None:
            by_model.setdefault(key, []).append(o)
    failed_refs = set(last.get("failed") or {})
    models = []
    for model in desired.spec.models:
        mine = by_model.get(model.key, [])
        parts = []
        verdicts = []
        synced = True
        for o in mine:
            live = observed.live.get(object_key(o))
            if live is None or (live["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) != o["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
                synced = False
            h = health.of(live)
            verdicts.append(h)
            parts.append({"object": f"{o['kind']}/{o['metadata']['name']}", "health": h.state, "message": h.message})
        overall = health.worst(verdicts)
        failed = any(ref(o) in failed_refs for o in mine)
        models.append({
            "namespace": model.namespace,
            "name": model.name,
            "version": model.stable,
            "canary": {"version": model.canary.version, "traffic": model.canary.traffic} if model.canary else None,
            "synced": synced,
            "health": overall.state,
            "message": overall.message,
            "objects": parts,
            "lastApply": {"commit": last.get("commit", ""), "time": last.get("time", ""),
                          "result": "failed" if failed else last.get("result", "never")},
        })
    invalid = json.loads(observed.inventory.annotations.get(LAST_INVALID, "{}") or "{}")
    return {
        "target": desired.spec.config.name,
        "revision": revision_info(desired.revision),
        "lastApply": last,
        "invalidCommit": invalid or None,  # a commit the controller refused; the last good one stays applied
        "models": models,
    }


SETTLED = ("Healthy", "Degraded")  # states that waiting will not change by itself


def unsettled(status: dict[str, Any], allow_unknown: bool = False) -> list[str]:
    """Models still Progressing, or Unknown (no controller has reported on them yet) unless
    Unknown is accepted (a cluster without the KServe controller never reports)."""
    settled = SETTLED + (("Unknown",) if allow_unknown else ())
    return [f"{m['namespace']}/{m['name']}" for m in status["models"] if m["health"] not in settled]


def wait_healthy(desired: Desired, cluster: Cluster, timeout: float, interval: float = 1.0,
                 inventory_namespace: str = INVENTORY_NAMESPACE, *, allow_unknown: bool = True,
                 progress: Callable[[dict[str, Any], list[str]], None] | None = None,
                 select: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Poll status until every model has settled: Healthy or Degraded (waiting longer will
    not help: the caller reports it); Unknown too when `allow_unknown` (the default for
    library callers such as the demo; `agent apply --wait` accepts it only with
    `--allow-unknown`). `status["unsettled"]` names the models still pending at the timeout;
    `progress(status, pending)` is called after every poll; `select(model)` keeps only the
    models it accepts (an apply of some models waits for those)."""
    deadline = time.monotonic() + timeout
    while True:
        status = model_status(desired, cluster, inventory_namespace)
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
