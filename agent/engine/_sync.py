"""Sync: write a plan to the cluster and keep the books (gitops-engine's pkg/sync).

Apart from the decision (observe, plan) this is the write path and its audit, refusals included: take the
plan's objects in order through agent.apply, record the intent first (inventory entries and
audit records before each request), post Events off the path, then save the inventory with its
audit anchor and write the closing audit record with the true result.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.apply import ApplyReport, EventPoster, ObjectResult, PruneRefused, SyncTask, execute
from agent.cluster import (
    AUDIT_HASH,
    AUDIT_SEQ,
    FIELD_MANAGER,
    LAST_APPLY,
    LAST_SYNC,
    Cluster,
    ClusterError,
    Entry,
    Inventory,
    TargetLease,
    save_inventory,
    sync_mark,
)
from agent.desired import Desired
from agent.engine._options import EngineOptions
from agent.engine._planning import OwnershipConflict
from agent.engine._view import Observed
from agent.errors import AgentError
from agent.plan import ObjectReport, Plan, owned_fields_hash
from agent.render import ObjectKey


@dataclass
class SyncResult:
    plan: Plan
    report: ApplyReport = field(default_factory=ApplyReport)
    requests: dict[str, int] = field(default_factory=dict)
    inventory_error: str = ""  # the inventory could not be saved: the apply failed, whatever its objects did

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.inventory_error


def identity() -> str:
    return f"{FIELD_MANAGER}@{socket.gethostname()}/{os.getpid()}"


def object_record(result: ObjectResult, dry_run: bool) -> dict[str, Any]:
    c = result.change
    return {
        "action": c.action,
        "object": {"apiVersion": c.api_version, "kind": c.kind, "namespace": c.namespace, "name": c.name},
        "model": c.model,
        "fields": c.changed_fields,
        "drift": c.drift,
        "dry_run": dry_run,
        "result": result.outcome,
        "error": result.message if result.outcome in ("failed", "skipped") else "",
    }



def model_versions(desired: Desired, key: str) -> dict[str, Any]:
    """A model's stable version, canary version and traffic as `desired` has them (the rollout's
    traffic when one runs); `removed` when the repo no longer declares it."""
    model = next((m for m in desired.spec.models if m.key == key), None)
    if model is None:
        return {"model": key, "removed": True}
    canary = model.canary
    return {"model": key, "stable": model.stable, "canary": canary.version if canary else None,
            "traffic": canary.traffic if canary else None}


def intent_record(c: ObjectReport, commit: str) -> dict[str, Any]:
    return {"action": c.action, "commit": commit, "model": c.model, "fields": c.changed_fields,
            "object": {"apiVersion": c.api_version, "kind": c.kind, "namespace": c.namespace, "name": c.name}}


class Run:
    """One reconcile's bookkeeping: the audit sink (if any), the inventory, the anchor.

    The audit log is opened at the first record, so a pass that records nothing (the
    controller's no-op resyncs) touches no file."""

    def __init__(self, desired: Desired, cluster: Cluster, options: EngineOptions) -> None:
        self.desired, self.cluster, self.options = desired, cluster, options
        self.target = desired.spec.config.name
        self.audit: Any = None
        self._opening = threading.Lock()
        self.anchor: tuple[int, str] | None = None

    @property
    def auditing(self) -> bool:
        return self.options.audit_log is not None

    def record(self, event: str, *, sync: bool = True, **fields: Any) -> None:
        if self.options.audit_log is None:
            return
        with self._opening:  # records come from the apply's worker threads
            if self.audit is None:
                from agent.audit import AuditLog  # structlog is only needed when auditing

                self.audit = AuditLog(self.options.audit_log, identity())
        self.anchor = self.audit.write(event, sync=sync, **{**self.options.audit_fields, **fields})

    def closing(self, result: str, plan: Plan, started: float, **extra: Any) -> None:
        rev = self.desired.revision
        if rev.pull_request:
            extra = {"pull_request": rev.pull_request, **extra}
        if rev.signer:  # --verify-signatures: who signed what was applied
            extra = {"signer": rev.signer, **extra}
        if self.desired.resolutions:  # which immutable version each registry reference meant
            extra = {"resolved": [{"model": r.key, "version": r.version, "ref": str(r.ref),
                                   "registry_version": r.resolved.version, "uri": r.resolved.uri,
                                   "run_id": r.resolved.run_id} for r in self.desired.resolutions], **extra}
        changed = sorted({c.model for c in plan.changed if c.model})
        if changed:  # the versions and traffic each model the pass changed has now (`agent history`)
            extra = {"models": [model_versions(self.desired, key) for key in changed], **extra}
        self.record("reconcile", target=self.target, commit=rev.commit, author=rev.author, message=rev.message,
                    dry_run=self.options.dry_run, result=result, counts=plan.counts(),
                    duration_s=round(time.monotonic() - started, 3), **extra)

    def save(self, inventory: Inventory) -> None:
        """Save the inventory, anchored at the latest audit record (made durable first)."""
        if self.audit is not None:
            self.audit.sync()
        if self.anchor is not None:
            inventory.annotations.update({AUDIT_SEQ: str(self.anchor[0]), AUDIT_HASH: self.anchor[1]})
        save_inventory(self.cluster, inventory)

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()


def write(run: Run, plan: Plan, tasks: list[SyncTask], inventory: Inventory, stale: list[ObjectKey],
          lease: TargetLease, progress: Callable[[ObjectResult], None] | None, started: float) -> SyncResult:
    """Write `plan` under the held `lease`: intent first, then each object, then the books."""
    options, cluster, desired = run.options, run.cluster, run.desired
    commit = desired.revision.commit
    saved = inventory.content()
    # intent first: every object we may create is in the inventory before its request is sent,
    # so a crash can never leave an object that prune does not know; gone entries are dropped
    for key in stale:
        inventory.entries.pop(key, None)
    for t in tasks:
        if t.action != "unchanged" and t.desired is not None and t.key not in inventory.entries:
            inventory.entries[t.key] = _entry(t.desired, "")
    outcome = SyncResult(plan=plan)
    inventory_error = ""
    try:
        if inventory.content() != saved:
            run.save(inventory)
    except ClusterError as exc:
        inventory_error = f"inventory {inventory.namespace}/{inventory.name}: {exc}"
    events = EventPoster(cluster) if options.events else None

    def before(c: ObjectReport) -> None:
        if options.stop is not None and options.stop.is_set():
            raise AgentError("not written: the agent is shutting down")
        lease.check()
        run.record("intent", sync=False, **intent_record(c, commit))

    def on_result(result: ObjectResult) -> None:
        run.record("object", sync=False, commit=commit, **object_record(result, False))
        if events is not None:
            events.post(result)
        if progress is not None:
            progress(result)

    try:
        if not inventory_error:
            outcome.report = execute(cluster, tasks, manager=options.manager, force=options.force_conflicts,
                                     concurrency=options.concurrency, on_result=on_result, before=before)
            try:
                update_inventory(run, inventory, outcome, tasks)
            except ClusterError as exc:
                inventory_error = f"inventory {inventory.namespace}/{inventory.name}: {exc}"
    finally:
        if events is not None:
            events.close()
    outcome.inventory_error = inventory_error
    ok = outcome.report.ok and not inventory_error
    run.closing("succeeded" if ok else "failed", plan, started,
                failed=[r.change.ref for r in outcome.report.failed],
                **({"error": inventory_error} if inventory_error else {}))
    if run.audit is not None:
        run.audit.sync()
    return outcome


def update_inventory(run: Run, inventory: Inventory, outcome: SyncResult, tasks: list[SyncTask]) -> None:
    """Record what we own now, with the owned-fields hash of each object as it stands."""
    manager, desired = run.options.manager, run.desired
    by_key = {r.change.key: r for r in outcome.report.results if r.change.action != "delete"}
    for t in tasks:
        if t.desired is None:
            continue
        result = by_key.get(t.key)
        if result is not None and result.outcome == "applied":
            fields = result.fields
        elif t.action == "unchanged" and t.live is not None:
            fields = owned_fields_hash(t.live, manager)
        else:
            existing = inventory.entries.get(t.key)
            if existing is None:
                continue
            fields = existing.fields  # failed or skipped: keep the entry (its intent) as it was
        inventory.entries[t.key] = _entry(t.desired, fields)
    for r in outcome.report.results:
        if r.outcome == "deleted":
            inventory.entries.pop(r.change.key, None)
    inventory.annotations[LAST_APPLY] = json.dumps({
        "commit": desired.revision.commit,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "result": "succeeded" if outcome.report.ok else "failed",
        "failed": {r.change.ref: r.message[:200] for r in outcome.report.failed},
    }, sort_keys=True)
    inventory.annotations[LAST_SYNC] = sync_mark(desired.revision.commit, run.options.synced_by,
                                                 run.options.sync_source)
    run.save(inventory)


def _entry(obj: dict[str, Any], fields: str) -> Entry:
    meta = obj["metadata"]
    return Entry(str(obj["apiVersion"]), str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]), fields)


def refuse(run: Run, refused: OwnershipConflict | PruneRefused, observed: Observed, started: float) -> None:
    """Audit a refusal (made before any write) and anchor it (not on a dry run); then raise it."""
    assert refused.plan is not None
    if run.auditing:
        run.closing("refused", refused.plan, started, error=str(refused))
        if not run.options.dry_run:
            with contextlib.suppress(ClusterError):  # the refusal stands; the anchor is a courtesy here
                run.save(observed.inventory)
    raise refused
