"""Web UI benchmark: how long the pages of `agent run`'s UI take to render at N models.

For each N (default 100 and 1000) a synthetic repo of N models (bench/offline.py's generator:
a quarter with a canary, a third monitored, 2-4 versions with evaluations and a gate) is
written as a git repo in a temporary directory and loaded with `agent.desired.load_desired`
(read, validate, resolve, render). A `Board` (agent.ui) is filled as a controller's pass would
fill it: live = every desired object as if applied (the same spec-hash annotations) plus a
Ready status, the inventory's last-apply and last-sync marks, a rollout in progress (step 2)
for every model with a canary, and a hash-chained audit log (agent.audit.AuditLog) holding the
initial apply of every model, then 200 commits of one model each with their rollout records.

Then, per page (`/`, the model page of a model with a rollout, `/audit`), the time of
`UiApp.handle` in process (median and p95 of R renders after one warm-up; the status document
is built once per publication, as in the controller, so the warm-up pays it), and, for `/`,
the time to the last byte over HTTP from a real server (the controller's HTTP server serving
the UI on 127.0.0.1, `urllib` as the client, median and p95 of R requests). No Prometheus: the
model page's chart then says "no data" (its query time is Prometheus', not the page's).

Run:  .venv/bin/python bench/ui.py [N ...] [--renders R]     (default: 100 1000; R = 50)
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.audit import AuditLog  # noqa: E402
from agent.cluster import LAST_APPLY, LAST_SYNC  # noqa: E402
from agent.controller import HttpServer  # noqa: E402
from agent.desired import Desired, load_desired, with_traffic  # noqa: E402
from agent.render import object_key  # noqa: E402
from agent.rollout import CheckResult, LiveRollouts, RolloutState  # noqa: E402
from agent.ui import Board, Published, Request, UiApp  # noqa: E402
from bench.offline import generate  # noqa: E402

TARGET = "bench"
AUDIT_COMMITS = 200


def _time_text(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def applied(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """`obj` as the API server would return it once applied and ready."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(uid=f"uid-{meta.get('namespace', '')}-{meta['name']}-{obj['kind']}", resourceVersion="1",
                generation=1, creationTimestamp=_time_text(now - 3600))
    kind = obj["kind"]
    if kind == "InferenceService":
        live["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _time_text(now)}],
                          "url": f"http://{meta['name']}.{meta.get('namespace', '')}.example"}
    elif kind == "Deployment":
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        live["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                          "readyReplicas": replicas, "availableReplicas": replicas,
                          "conditions": [{"type": "Available", "status": "True"}]}
    elif kind == "HorizontalPodAutoscaler":
        live["status"] = {"currentReplicas": 1, "desiredReplicas": 1,
                          "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}
    return live


def rollouts_of(desired: Desired, now: float) -> LiveRollouts:
    """A rollout at its second step for every model with a canary, with its last analysis."""
    states: dict[str, RolloutState] = {}
    traffic: dict[str, int] = {}
    for model in desired.spec.models:
        if model.canary is None:
            continue
        checks = [CheckResult("error-rate", 0.004, True, "error-rate 0.004 <= 0.02"),
                  CheckResult("p99-latency", 0.081, True, "p99-latency 0.081 <= 0.25")]
        states[model.key] = RolloutState(
            model=model.key, version=model.canary.version, stable=model.stable, strategy="canary",
            phase="Progressing", step=1, traffic=50, step_started=now - 40, last_checks=checks,
            history=[{"at": now - 100, "kind": "started", "from": None, "to": "Progressing", "step": 0, "traffic": 10,
                      "reason": "rollout of the canary started"},
                     {"at": now - 40, "kind": "advanced", "from": "Progressing", "to": "Progressing", "step": 1,
                      "traffic": 50, "reason": "error-rate 0.004 <= 0.02, p99-latency 0.081 <= 0.25"}])
        traffic[model.key] = 50
    return LiveRollouts(states=states, traffic=traffic)


def write_audit(path: Path, desired: Desired, now: float) -> int:
    """The audit log of the initial apply of every model, then AUDIT_COMMITS commits of one
    model each, with their rollout records; returns how many records it holds."""
    models = desired.spec.models
    count = 0
    with AuditLog(path, "modelops-agent@bench/1") as log:
        for m in models:
            log.write("object", sync=False, model=m.key, action="create", commit=hashlib.sha1(b"initial").hexdigest(), result="applied",
                      object={"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                              "namespace": m.namespace, "name": m.name})
            count += 1
        log.write("reconcile", target=TARGET, commit=hashlib.sha1(b"initial").hexdigest(), author="Ada <ada@acme.example>",
                  message="initial", dry_run=False, result="succeeded", counts={"create": len(models)},
                  duration_s=1.0, models=[{"model": m.key, "stable": m.stable,
                                          "canary": m.canary.version if m.canary else None,
                                          "traffic": m.canary.traffic if m.canary else None} for m in models])
        count += 1
        for c in range(AUDIT_COMMITS):
            m = models[(c * 7) % len(models)]
            commit = hashlib.sha1(f"commit {c}".encode()).hexdigest()
            new = m.canary.version if m.canary else m.stable
            log.write("object", sync=False, model=m.key, action="update", commit=commit, result="applied",
                      object={"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                              "namespace": m.namespace, "name": m.name})
            log.write("reconcile", sync=False, target=TARGET, commit=commit, author="Ada <ada@acme.example>",
                      message=f"{m.name}: canary {c} (#{c + 10})", dry_run=False, result="succeeded",
                      counts={"update": 1}, duration_s=0.1,
                      models=[{"model": m.key, "stable": m.stable, "canary": new, "traffic": 10}])
            for step, (kind, traffic) in enumerate((("started", 10), ("advanced", 50), ("succeeded", 100))):
                log.write("rollout", sync=False, model=m.key, transition=kind, reason="error-rate 0.004 <= 0.02",
                          step=step, traffic=traffic, version=new,
                          checks=[{"name": "error-rate", "value": 0.004, "ok": True, "message": "ok"}])
            count += 5
    return count


def fill_board(work: Path, n: int) -> tuple[Board, Published, dict[str, Any]]:
    repo = work / f"repo-{n}"
    # no background `git gc --auto` after the generator's commits: it deletes object directories
    # while the generator counts the repo's files (seen at N = 10,000)
    os.environ.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="gc.auto", GIT_CONFIG_VALUE_0="0")
    generate(repo, n)
    started = time.monotonic()
    desired = load_desired(repo, "HEAD", cached=False, resolve=False)
    now = time.time()
    rollouts = rollouts_of(desired, now)
    # what the cluster holds: the objects at the rollouts' traffic, as the controller applied them
    # the controller publishes the desired state it applied: with the rollouts' traffic rendered in
    desired = with_traffic(desired, rollouts.traffic)
    live = {object_key(o): applied(o, now) for o in desired.objects}
    annotations = {
        LAST_APPLY: json.dumps({"commit": desired.revision.commit, "time": _time_text(now - 120), "result": "succeeded",
                                "failed": {}}, sort_keys=True),
        LAST_SYNC: json.dumps({"commit": desired.revision.commit, "time": _time_text(now - 30), "by": "controller",
                               "source": "https://git.example/ml/models.git@main"}, sort_keys=True),
    }
    audit = work / f"audit-{n}.jsonl"
    records = write_audit(audit, desired, now)
    board = Board()
    entry = Published(target=TARGET, desired=desired, live=live, annotations=annotations,
                      rollouts=rollouts, at=now, audit_log=audit)
    board.publish(entry)
    info = {"objects": len(desired.objects), "audit records": records, "fill s": time.monotonic() - started}
    return board, entry, info


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class GcClock:
    """Time spent in Python's cyclic garbage collector while it is on (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def timed(fn: Callable[[], Any], renders: int) -> tuple[float, float, float]:
    """(median, p95, GC per call) in ms of `renders` calls after one warm-up."""
    fn()
    times = []
    with GcClock() as clock:
        for _ in range(renders):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, percentile(times, 0.95) * 1000, clock.seconds * 1000 / renders


def render(app: UiApp, path: str) -> bytes:
    response = app.handle(Request.of("GET", path))
    if response.status != 200:
        raise SystemExit(f"{path}: {response.status} {response.body[:200]!r}")
    return response.body


def fetch(url: str) -> bytes:
    """The whole answer (time to its last byte)."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        body: bytes = answer.read()
    return body


def bench(n: int, renders: int, work: Path, settle: bool = True) -> dict[str, Any]:
    board, entry, info = fill_board(work, n)
    if settle:  # as `agent run` does once a new state is applied (agent.controller.settle)
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    row: dict[str, Any] = {"N": n, "objects": info["objects"], "audit records": info["audit records"]}
    model = next(m for m in entry.desired.spec.models if m.canary is not None)
    pages = {"/": "/", "model page": f"/models/{model.namespace}/{model.name}", "/audit": "/audit"}
    app = UiApp(board)
    try:
        # the first render after a publication builds the entry's status document (then cached)
        start = time.perf_counter()
        overview = render(app, "/")
        row["/ first render ms"] = (time.perf_counter() - start) * 1000
        row["/ KiB"] = len(overview) / 1024
        for label, path in pages.items():
            med, p95, in_gc = timed(lambda path=path: render(app, path), renders)  # type: ignore[misc]
            row[f"{label} ms p50"] = med
            row[f"{label} ms p95"] = p95
            if label == "/":
                row["/ GC ms per render"] = in_gc
        # a pass that writes an audit record: the next /audit reads and verifies the log again
        assert entry.audit_log is not None
        after_write = []
        for i in range(5):
            with AuditLog(entry.audit_log, "modelops-agent@bench/2") as log:
                log.write("resync", note=f"bench {i}")
            start = time.perf_counter()
            render(app, "/audit")
            after_write.append(time.perf_counter() - start)
        row["/audit after a write ms"] = statistics.median(after_write) * 1000
        server = HttpServer("127.0.0.1", 0, health=lambda: (True, "ok"), ready=lambda: (True, "ok"), ui=app,
                            ui_only=True)
        server.start()
        try:
            med, p95, _ = timed(lambda: fetch(f"{server.url}/"), renders)
            row["/ over HTTP ms p50"] = med
            row["/ over HTTP ms p95"] = p95
        finally:
            server.stop()
    finally:
        app.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    parser.add_argument("--renders", type=int, default=50)
    parser.add_argument("--no-settle", action="store_true",
                        help="leave the long-lived state in the collector's walks (agent run freezes it once a new "
                             "state is applied: agent.controller.settle)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        for n in args.sizes:
            rows.append(bench(n, args.renders, Path(tmp), not args.no_settle))
            gc.unfreeze()
            print(json.dumps(rows[-1]), file=sys.stderr)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
