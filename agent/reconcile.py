"""Reconcile one target against a live cluster: observe, plan, apply, prune, audit.

observe: one LIST per managed kind (label selector on our target) + the inventory.
plan:    per object; no request when the live spec-hash and the fields we own match what we
         applied last, otherwise a server-side-apply dry-run to see exactly what would change.
apply:   agent.apply.execute, then the inventory and the audit anchor are updated.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.apply import ApplyReport, ObjectResult, PruneRefused, check_prune_budget, execute
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
    load_inventory,
    save_inventory,
)
from agent.errors import AgentError
from agent.pipeline import Desired, load_desired, revision_info
from agent.plan import ObjectChange, Plan, build_plan, change
from agent.plan._normalize import field_owners, normalize, owned_fields_hash
from agent.render import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SPEC_HASH_ANNOTATION,
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


@dataclass
class Observed:
    live: dict[ObjectKey, dict[str, Any]]
    inventory: Inventory


@dataclass
class Outcome:
    plan: Plan
    report: ApplyReport = field(default_factory=ApplyReport)
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report.ok


def identity() -> str:
    return f"{FIELD_MANAGER}@{socket.gethostname()}/{os.getpid()}"


def selector(target: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{TARGET_LABEL}={target}"


def observe(cluster: Cluster, desired: list[dict[str, Any]], target: str,
            inventory_namespace: str = INVENTORY_NAMESPACE) -> Observed:
    inventory = load_inventory(cluster, target, inventory_namespace)
    kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in desired}
    kinds |= {(e.api_version, e.kind) for e in inventory.entries.values()}
    sel = selector(target)
    infos = [cluster.kind(api_version, kind) for api_version, kind in sorted(kinds)]
    live: dict[ObjectKey, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:  # the LISTs are independent: overlap their latency
        for items in pool.map(lambda info: list(cluster.list(info, sel)), infos):
            for obj in items:
                live[object_key(obj)] = obj
    return Observed(live=live, inventory=inventory)


def _matches(want: dict[str, Any], have: dict[str, Any], entry: Entry | None, manager: str) -> bool:
    """No request needed: the live object carries our rendered spec-hash and nobody took a
    field from us since our last apply (the fields we own hash as they did then)."""
    annotations = (have.get("metadata") or {}).get("annotations") or {}
    if annotations.get(SPEC_HASH_ANNOTATION) != want["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return False
    return entry is not None and bool(entry.fields) and entry.fields == owned_fields_hash(have, manager)


def _dry_run_compare(cluster: Cluster, want: dict[str, Any], have: dict[str, Any], manager: str) -> ObjectChange:
    """A change is suspected: ask the server what applying would produce, and compare that
    with the live object (both server-side, so defaults never show up as differences)."""
    try:
        dry = cluster.apply(want, force=True, dry_run=True, field_manager=manager)
    except ClusterError as exc:
        meta = want["metadata"]
        raise AgentError(f"dry-run of {want['kind']}/{meta.get('namespace', '')}/{meta['name']} failed: {exc}") from exc
    before, after = normalize(have), normalize(dry)
    if before == after:
        result = change("unchanged", before, after, [])
    else:
        result = change("update", before, after)
        for path in result.changed_fields:
            owners = field_owners(have, path, manager)
            if owners:
                result.drift[path] = ", ".join(owners)
    result.desired = want
    result.live = have
    return result


def plan_against(cluster: Cluster, desired: Desired, observed: Observed, *, manager: str = FIELD_MANAGER,
                 prune: bool = True, concurrency: int = 8) -> Plan:
    want = {object_key(o): o for o in desired.objects}
    entries = observed.inventory.entries
    changes: dict[ObjectKey, ObjectChange] = {}
    suspects: list[ObjectKey] = []
    for key, obj in want.items():
        have = observed.live.get(key)
        if have is None:
            changes[key] = change("create", None, obj)
        elif _matches(obj, have, entries.get(key), manager):
            changes[key] = change("unchanged", obj, obj, [])
            changes[key].live = have
        else:
            suspects.append(key)
    if suspects:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            checked = pool.map(lambda k: _dry_run_compare(cluster, want[k], observed.live[k], manager), suspects)
            changes.update(zip(suspects, checked, strict=True))
    ordered = [changes[key] for key in sorted(changes)]
    if prune:
        for key in sorted(set(entries) - set(want)):
            have = observed.live.get(key)
            if have is None:
                continue  # already gone
            gone = change("delete", normalize(have), None)
            gone.live = have
            ordered.append(gone)
    return build_plan(ordered, base={"short": "live"}, revision=revision_info(desired.revision))


def live_plan(path: str | Path, revision: str | None = None, *, kubeconfig: str | None = None,
              context: str | None = None, prune: bool | None = None,
              inventory_namespace: str = INVENTORY_NAMESPACE) -> Plan:
    desired = load_desired(path, revision)
    with Cluster.connect(kubeconfig, context) as cluster:
        observed = observe(cluster, desired.objects, desired.spec.config.name, inventory_namespace)
        do_prune = desired.spec.config.policy.prune if prune is None else prune
        return plan_against(cluster, desired, observed, prune=do_prune)


def _event(cluster: Cluster, result: ObjectResult) -> None:
    c = result.change
    reason = {"applied": "Applied", "deleted": "Pruned", "failed": "ApplyFailed", "skipped": "ApplySkipped"}.get(result.outcome)
    if reason is None:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    uid = ((result.live or c.live or {}).get("metadata") or {}).get("uid")
    namespace = c.namespace or "default"
    message = {"Applied": f"{c.action}d by modelops-agent", "Pruned": "deleted by modelops-agent (no longer in Git)"}.get(
        reason, result.message)
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{c.name}.", "namespace": namespace},
        "involvedObject": {"apiVersion": c.api_version, "kind": c.kind, "name": c.name,
                           **({"namespace": c.namespace} if c.namespace else {}), **({"uid": uid} if uid else {})},
        "reason": reason,
        "message": message[:1000],
        "type": "Normal" if reason in ("Applied", "Pruned") else "Warning",
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    with contextlib.suppress(ClusterError, AgentError):  # best effort; the audit log is the record
        cluster.create(cluster.kind("v1", "Event"), event, namespace)


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


def reconcile(desired: Desired, cluster: Cluster, options: Options,
              progress: Callable[[ObjectResult], None] | None = None) -> Outcome:
    """Make the cluster match `desired` (already validated). Raises PruneRefused before any
    write when the deletions exceed the budget."""
    started = time.monotonic()
    config = desired.spec.config
    target = config.name
    observed = observe(cluster, desired.objects, target, options.inventory_namespace)
    prune = config.policy.prune if options.prune is None else options.prune
    plan = plan_against(cluster, desired, observed, manager=options.manager, prune=prune,
                        concurrency=options.concurrency)
    audit = None
    if options.audit_log:
        from agent.audit import AuditLog  # structlog is only needed when auditing

        audit = AuditLog(options.audit_log, identity())
    rev = desired.revision
    if prune and not options.allow_mass_prune:
        budget = config.policy.prune_budget
        try:
            check_prune_budget(plan, len(observed.inventory.entries), budget.max_fraction, budget.max_count)
        except PruneRefused as refused:
            if audit is not None:  # a refusal is worth a record, anchored in the cluster like any other
                seq, digest = audit.write("reconcile", target=target, commit=rev.commit, author=rev.author,
                                          message=rev.message, dry_run=options.dry_run, result="refused",
                                          error=str(refused), counts=plan.counts())
                audit.close()
                observed.inventory.annotations.update({AUDIT_SEQ: str(seq), AUDIT_HASH: digest})
                save_inventory(cluster, observed.inventory)
            raise

    outcome = Outcome(plan=plan)
    try:
        if options.dry_run:
            outcome.report = ApplyReport([ObjectResult(c, "skipped", "dry run") for c in plan.changed])
        else:
            def on_result(result: ObjectResult) -> None:
                if options.events:
                    _event(cluster, result)
                if progress is not None:
                    progress(result)
            outcome.report = execute(cluster, plan, manager=options.manager, force=options.force_conflicts,
                                     concurrency=options.concurrency, on_result=on_result)
        anchor: tuple[int, str] | None = None
        if audit is not None:
            for result in outcome.report.results:
                audit.write("object", commit=rev.commit, **_object_record(result, options.dry_run))
            anchor = audit.write(
                "reconcile", target=target, commit=rev.commit, author=rev.author, message=rev.message,
                dry_run=options.dry_run, result="succeeded" if outcome.report.ok else "failed",
                counts=plan.counts(), failed=[r.change.ref for r in outcome.report.failed],
                duration_s=round(time.monotonic() - started, 3),
            )
        if not options.dry_run:
            _update_inventory(cluster, observed.inventory, desired, outcome, anchor, options.manager)
    finally:
        if audit is not None:
            audit.close()
    outcome.requests = dict(cluster.requests)
    return outcome


def _update_inventory(cluster: Cluster, inventory: Inventory, desired: Desired, outcome: Outcome,
                      anchor: tuple[int, str] | None, manager: str) -> None:
    """Record what we own now. Written only when something changed: a no-op writes nothing."""
    before = inventory.content()
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
                continue  # failed create: nothing of ours exists
            fields = existing.fields
        meta = c.desired["metadata"]
        inventory.entries[key] = Entry(str(c.desired["apiVersion"]), str(c.desired["kind"]),
                                       str(meta.get("namespace") or ""), str(meta["name"]), fields)
    for r in outcome.report.results:
        if r.outcome == "deleted" and r.change.live is not None:
            inventory.entries.pop(object_key(r.change.live), None)
    changed = inventory.content() != before or outcome.plan.has_changes or not outcome.report.ok
    if not changed:
        return
    if anchor is not None:
        inventory.annotations[AUDIT_SEQ] = str(anchor[0])
        inventory.annotations[AUDIT_HASH] = anchor[1]
    inventory.annotations[LAST_APPLY] = json.dumps({
        "commit": desired.revision.commit,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "result": "succeeded" if outcome.report.ok else "failed",
        "failed": {r.change.ref: r.message[:200] for r in outcome.report.failed},
    }, sort_keys=True)
    save_inventory(cluster, inventory)
