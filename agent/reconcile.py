"""Reconcile one target against a live cluster: observe, plan, apply, prune, audit.

observe: one LIST per managed kind (label selector: managed by us, any target, so an object
         of another target is seen and never taken over silently) + the inventory.
plan:    per object; no request when the live spec-hash and the fields we own match what we
         applied last, otherwise a server-side-apply dry-run to see exactly what would change.
apply:   only when something changes: take the target's Lease, record the intent (inventory
         entries and audit records) *before* each write, execute, then the inventory, its audit
         anchor and the closing audit record. A crash at any point leaves every object the agent
         may have written in the inventory, so prune can always find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.apply import ApplyReport, EventPoster, ObjectResult, PruneRefused, check_prune_budget, execute
from agent.cluster import (
    AUDIT_HASH,
    AUDIT_SEQ,
    FIELD_MANAGER,
    INVENTORY_NAMESPACE,
    LAST_APPLY,
    Cluster,
    ClusterError,
    Entry,
    Inventory,
    KindInfo,
    TargetLease,
    Timeouts,
    lease_name,
    load_inventory,
    save_inventory,
)
from agent.errors import AgentError
from agent.pipeline import Desired, load_desired, revision_info
from agent.plan import ObjectChange, Plan, owned_fields_hash
from agent.plan import live_plan as live_plan_of
from agent.render import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TARGET_LABEL,
    ObjectKey,
    object_key,
)


@dataclass
class Options:
    prune: bool | None = None  # None: the repo config decides
    dry_run: bool = False
    allow_mass_prune: bool = False
    force_conflicts: bool = True
    concurrency: int = 8
    inventory_namespace: str = INVENTORY_NAMESPACE
    events: bool = True
    audit_log: Path | None = None
    manager: str = FIELD_MANAGER
    adopt: bool = False  # take over objects that carry another target's ownership label
    lock_timeout: float = 0.0  # seconds to wait for the target's Lease held by someone else
    audit_noop: bool = True  # a no-op gets its closing record (the controller's resyncs do not)
    stop: threading.Event | None = None  # set (SIGTERM): the object in flight finishes, no further write starts


@dataclass
class Observed:
    live: dict[ObjectKey, dict[str, Any]]  # objects of this target
    inventory: Inventory
    foreign: dict[ObjectKey, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (other target, object)

    @property
    def stale(self) -> list[ObjectKey]:
        """Inventory entries whose objects are gone (deleted by someone, or a create that never
        happened after its intent was recorded): dropped at the next write."""
        return sorted(k for k in self.inventory.entries if k not in self.live)


class OwnershipConflict(AgentError):
    """Objects of the plan carry another target's ownership label; apply refuses them."""

    plan: Plan | None = None


@dataclass
class Outcome:
    plan: Plan
    report: ApplyReport = field(default_factory=ApplyReport)
    requests: dict[str, int] = field(default_factory=dict)
    inventory_error: str = ""  # the inventory could not be saved: the apply failed, whatever its objects did

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.inventory_error


def identity() -> str:
    return f"{FIELD_MANAGER}@{socket.gethostname()}/{os.getpid()}"


def selector(target: str | None = None) -> str:
    """Our objects (of one target, or of every target when None)."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY}" + (f",{TARGET_LABEL}={target}" if target else "")


def observe(cluster: Cluster, desired: list[dict[str, Any]], target: str,
            inventory_namespace: str = INVENTORY_NAMESPACE) -> Observed:
    inventory = load_inventory(cluster, target, inventory_namespace)
    kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in desired}
    kinds |= {(e.api_version, e.kind) for e in inventory.entries.values()}
    sel = selector()  # every target's: an object of another target must be seen to be refused
    infos = [cluster.kind(api_version, kind) for api_version, kind in sorted(kinds)]
    namespaces: dict[tuple[str, str], set[str]] = {}
    for api_version, kind, ns in [(str(o["apiVersion"]), str(o["kind"]), str(o["metadata"].get("namespace") or ""))
                                  for o in desired] + [(e.api_version, e.kind, e.namespace) for e in inventory.entries.values()]:
        if ns:
            namespaces.setdefault((api_version, kind), set()).add(ns)

    def list_kind(info: KindInfo) -> list[dict[str, Any]]:
        """One LIST over every namespace; where that is forbidden (a least-privilege install,
        RoleBindings per managed namespace), one LIST per namespace the kind is managed in."""
        if (info.api_version, info.kind) not in cluster.namespace_scoped:
            try:
                return list(cluster.list(info, sel))
            except ClusterError as exc:
                if exc.status != 403 or not info.namespaced:
                    raise
                cluster.namespace_scoped.add((info.api_version, info.kind))
        return [obj for ns in sorted(namespaces.get((info.api_version, info.kind), ()))
                for obj in cluster.list(info, sel, namespace=ns)]

    with ThreadPoolExecutor(max_workers=4) as pool:  # the LISTs are independent: overlap their latency
        listed = [obj for items in pool.map(list_kind, infos) for obj in items]
    return observed_from(listed, inventory, target)



def observed_from(objects: Iterable[dict[str, Any]], inventory: Inventory, target: str) -> Observed:
    """Observed state from objects managed by the agent (any target): ours apart from others'.
    The controller builds it from its watch cache, the CLI from its LISTs."""
    live: dict[ObjectKey, dict[str, Any]] = {}
    foreign: dict[ObjectKey, tuple[str, dict[str, Any]]] = {}
    for obj in objects:
        owner = ((obj.get("metadata") or {}).get("labels") or {}).get(TARGET_LABEL, "")
        if owner == target:
            live[object_key(obj)] = obj
        else:
            foreign[object_key(obj)] = (owner, obj)
    return Observed(live=live, inventory=inventory, foreign=foreign)


def plan_against(cluster: Cluster, desired: Desired, observed: Observed, *, manager: str = FIELD_MANAGER,
                 prune: bool = True, concurrency: int = 8, adopt: bool = False) -> Plan:
    """The live plan (agent.plan.live_plan) with the server-side-apply dry-run as its dry-runner."""
    def dry_run(want: dict[str, Any]) -> dict[str, Any]:
        try:
            return cluster.apply(want, force=True, dry_run=True, field_manager=manager)
        except ClusterError as exc:
            meta = want["metadata"]
            raise AgentError(f"dry-run of {want['kind']}/{meta.get('namespace', '')}/{meta['name']} failed: {exc}") from exc

    owned = {key: entry.fields for key, entry in observed.inventory.entries.items()}
    return live_plan_of(desired.objects, observed.live, observed.foreign, owned, dry_run, manager=manager, prune=prune,
                        adopt=adopt, concurrency=concurrency, revision=revision_info(desired.revision))


def live_plan(path: str | Path, revision: str | None = None, *, kubeconfig: str | None = None,
              context: str | None = None, prune: bool | None = None,
              inventory_namespace: str = INVENTORY_NAMESPACE, timeouts: Timeouts | None = None) -> Plan:
    desired = load_desired(path, revision)
    with Cluster.connect(kubeconfig, context, timeouts=timeouts) as cluster:
        observed = observe(cluster, desired.objects, desired.spec.config.name, inventory_namespace)
        do_prune = desired.spec.config.policy.prune if prune is None else prune
        return plan_against(cluster, desired, observed, prune=do_prune)


def conflict_message(plan: Plan) -> str:
    refs = "; ".join(f"{c.ref} belongs to target {c.owner_conflict!r}" for c in plan.conflicts)
    return (f"refusing to take over {len(plan.conflicts)} object(s) of another target: {refs}. Two repos (or two "
            "directories of one repo) render the same object; remove it from one of them, or re-run with --adopt "
            "to take it over on purpose")


def _object_record(result: ObjectResult, dry_run: bool) -> dict[str, Any]:
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



def _intent_record(c: ObjectChange, commit: str) -> dict[str, Any]:
    return {"action": c.action, "commit": commit, "model": c.model, "fields": c.changed_fields,
            "object": {"apiVersion": c.api_version, "kind": c.kind, "namespace": c.namespace, "name": c.name}}


class _Run:
    """One reconcile's bookkeeping: the audit sink (if any), the inventory, the anchor."""

    def __init__(self, desired: Desired, cluster: Cluster, options: Options) -> None:
        self.desired, self.cluster, self.options = desired, cluster, options
        self.target = desired.spec.config.name
        self.audit: Any = None
        if options.audit_log:
            from agent.audit import AuditLog  # structlog is only needed when auditing

            self.audit = AuditLog(options.audit_log, identity())
        self.anchor: tuple[int, str] | None = None

    def record(self, event: str, *, sync: bool = True, **fields: Any) -> None:
        if self.audit is not None:
            self.anchor = self.audit.write(event, sync=sync, **fields)

    def closing(self, result: str, plan: Plan, started: float, **extra: Any) -> None:
        rev = self.desired.revision
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


def reconcile(desired: Desired, cluster: Cluster, options: Options,
              progress: Callable[[ObjectResult], None] | None = None, *,
              observed: Observed | None = None, lease: TargetLease | None = None,
              writes: Callable[[Plan], bool] | None = None) -> Outcome:
    """Make the cluster match `desired` (already validated).

    Raises PruneRefused or OwnershipConflict before any write when the deletions exceed the
    budget or an object belongs to another target (unless options.adopt); the exception
    carries the plan (`.plan`).

    The controller passes what it already has: `observed` (live state from its watch cache and
    the inventory it keeps, so a resync makes no request), `lease` (the leader's Lease, held
    across reconciles, so none is taken or released here) and `writes(plan)` (False: report
    the plan, write nothing, e.g. drift under `--drift-policy detect` or a follower)."""
    started = time.monotonic()
    config = desired.spec.config
    target = config.name
    _refuse_own_state(desired, options.inventory_namespace)
    prune = config.policy.prune if options.prune is None else options.prune
    run = _Run(desired, cluster, options)
    try:
        if observed is None:
            observed = observe(cluster, desired.objects, target, options.inventory_namespace)
        plan = plan_against(cluster, desired, observed, manager=options.manager, prune=prune,
                            concurrency=options.concurrency, adopt=options.adopt)
        _refuse(run, plan, observed, prune, started)
        if options.dry_run:
            outcome = Outcome(plan=plan, report=ApplyReport([ObjectResult(c, "skipped", "dry run") for c in plan.changed]))
            for result in outcome.report.results:
                run.record("object", sync=False, commit=desired.revision.commit, **_object_record(result, True))
            run.closing("succeeded", plan, started)
        elif not plan.has_changes and not observed.stale:
            outcome = Outcome(plan=plan)  # a no-op writes nothing to the cluster: no Lease, no inventory
            if options.audit_noop:
                run.closing("succeeded", plan, started)
        elif writes is not None and not writes(plan):
            outcome = Outcome(plan=plan)  # reported by the caller, not written
        elif lease is not None:
            lease.check()
            outcome = _write(run, plan, observed, lease, progress, started)
        else:
            with TargetLease(cluster, target, options.inventory_namespace, identity(), wait=options.lock_timeout) as lease:
                current = load_inventory(cluster, target, options.inventory_namespace)
                if current.resource_version != observed.inventory.resource_version:
                    # someone wrote this target between our plan and our Lease: plan again
                    observed = observe(cluster, desired.objects, target, options.inventory_namespace)
                    plan = plan_against(cluster, desired, observed, manager=options.manager, prune=prune,
                                        concurrency=options.concurrency, adopt=options.adopt)
                    _refuse(run, plan, observed, prune, started)
                outcome = _write(run, plan, observed, lease, progress, started)
    finally:
        run.close()
    outcome.requests = dict(cluster.requests)
    return outcome


def _refuse_own_state(desired: Desired, namespace: str) -> None:
    """The repo may not render the agent's own bookkeeping (its inventory or its Lease): applying
    it would overwrite what prune and the lock rely on."""
    target = desired.spec.config.name
    own = {("", "ConfigMap", namespace, Inventory(target=target).name),
           ("coordination.k8s.io", "Lease", namespace, lease_name(target))}
    clash = sorted(f"{k[1]}/{k[2]}/{k[3]}" for k in own & {object_key(o) for o in desired.objects})
    if clash:
        raise AgentError(f"the repo renders {', '.join(clash)}, the agent's own state for target {target!r}: "
                         "remove it from the repo")


def _refuse(run: _Run, plan: Plan, observed: Observed, prune: bool, started: float) -> None:
    """Refusals happen before any write; each is audited (and anchored when not a dry run)."""
    options, config = run.options, run.desired.spec.config
    refusal: OwnershipConflict | PruneRefused | None = None
    if plan.conflicts and not options.adopt:
        refusal = OwnershipConflict(conflict_message(plan))
    elif prune and not options.allow_mass_prune:
        budget = config.policy.prune_budget
        try:
            check_prune_budget(plan, len(observed.inventory.entries), budget.max_fraction, budget.max_count)
        except PruneRefused as refused:
            refusal = refused
    if refusal is None:
        return
    refusal.plan = plan
    if run.audit is not None:
        run.closing("refused", plan, started, error=str(refusal))
        if not options.dry_run:
            with contextlib.suppress(ClusterError):  # the refusal stands; the anchor is a courtesy here
                run.save(observed.inventory)
    raise refusal


def _write(run: _Run, plan: Plan, observed: Observed, lease: TargetLease,
           progress: Callable[[ObjectResult], None] | None, started: float) -> Outcome:
    options, cluster, desired = run.options, run.cluster, run.desired
    commit = desired.revision.commit
    inventory = observed.inventory
    saved = inventory.content()
    # intent first: every object we may create is in the inventory before its request is sent,
    # so a crash can never leave an object that prune does not know; gone entries are dropped
    for key in observed.stale:
        inventory.entries.pop(key, None)
    for c in plan.changed:
        if c.desired is not None and object_key(c.desired) not in inventory.entries:
            meta = c.desired["metadata"]
            inventory.entries[object_key(c.desired)] = Entry(
                str(c.desired["apiVersion"]), str(c.desired["kind"]), str(meta.get("namespace") or ""), str(meta["name"]), "")
    outcome = Outcome(plan=plan)
    inventory_error = ""
    try:
        if inventory.content() != saved:
            run.save(inventory)
    except ClusterError as exc:
        inventory_error = f"inventory {inventory.namespace}/{inventory.name}: {exc}"
    events = EventPoster(cluster) if options.events else None

    def before(c: ObjectChange) -> None:
        if options.stop is not None and options.stop.is_set():
            raise AgentError("not written: the agent is shutting down")
        lease.check()
        run.record("intent", sync=False, **_intent_record(c, commit))

    def on_result(result: ObjectResult) -> None:
        run.record("object", sync=False, commit=commit, **_object_record(result, False))
        if events is not None:
            events.post(result)
        if progress is not None:
            progress(result)

    try:
        if not inventory_error:
            outcome.report = execute(cluster, plan, manager=options.manager, force=options.force_conflicts,
                                     concurrency=options.concurrency, on_result=on_result, before=before)
            try:
                _update_inventory(run, inventory, outcome)
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


def _update_inventory(run: _Run, inventory: Inventory, outcome: Outcome) -> None:
    """Record what we own now, with the owned-fields hash of each object as it stands."""
    manager, desired = run.options.manager, run.desired
    by_key = {object_key(r.change.desired): r for r in outcome.report.results if r.change.desired is not None}
    for c in outcome.plan.objects:
        if c.desired is None:
            continue
        key = object_key(c.desired)
        result = by_key.get(key)
        if result is not None and result.outcome == "applied":
            fields = result.fields
        elif c.action == "unchanged" and c.live is not None:
            fields = owned_fields_hash(c.live, manager)
        else:
            existing = inventory.entries.get(key)
            if existing is None:
                continue
            fields = existing.fields  # failed or skipped: keep the entry (its intent) as it was
        meta = c.desired["metadata"]
        inventory.entries[key] = Entry(str(c.desired["apiVersion"]), str(c.desired["kind"]),
                                       str(meta.get("namespace") or ""), str(meta["name"]), fields)
    for r in outcome.report.results:
        if r.outcome == "deleted" and r.change.live is not None:
            inventory.entries.pop(object_key(r.change.live), None)
    inventory.annotations[LAST_APPLY] = json.dumps({
        "commit": desired.revision.commit,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "result": "succeeded" if outcome.report.ok else "failed",
        "failed": {r.change.ref: r.message[:200] for r in outcome.report.failed},
    }, sort_keys=True)
    run.save(inventory)
