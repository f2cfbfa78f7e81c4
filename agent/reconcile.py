"""Reconcile one target against a live cluster: observe, plan, refuse or write (agent.sync).

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
import dataclasses
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.apply import ApplyReport, ObjectResult, PruneRefused, check_prune_budget
from agent.cluster import (
    FIELD_MANAGER,
    INVENTORY_NAMESPACE,
    Cluster,
    ClusterError,
    Inventory,
    KindInfo,
    TargetLease,
    Timeouts,
    lease_name,
    load_inventory,
    load_rollouts,
    rollouts_name,
)
from agent.errors import AgentError
from agent.pipeline import Desired, load_desired, revision_info, with_traffic
from agent.plan import Plan, RolloutNote
from agent.plan import live_plan as live_plan_of
from agent.render import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TARGET_LABEL,
    ObjectKey,
    object_key,
    render,
)
from agent.rollout import InvalidState, RolloutState, describe, staged, traffic_note, traffic_override, without_canary
from agent.rollout_guard import judge_states
from agent.source import SignerKeys
from agent.spec import Model
from agent.sync import Options, Outcome, Run, identity, object_record, write

__all__ = [  # Options, Outcome and identity live with the write path (agent.sync); re-exported here
    "LiveRollouts", "Observed", "Options", "Outcome", "OwnershipConflict", "conflict_message", "identity", "live_plan",
    "observe", "observed_from", "plan_against", "read_rollouts", "reconcile", "rollout_note", "selector",
    "with_rollouts",
]

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


def stage_canaries(desired: Desired, observed: Observed) -> tuple[Desired, dict[str, str]]:
    """`desired` with the canary of each new KServe model held back until its stable revision
    is Ready (KServe gives a first revision all the traffic, whatever canaryTrafficPercent
    says), and model key -> why it waits. `agent apply` and the controller alike: the next
    pass after the InferenceService is Ready adds the canary."""
    live = {(k[2], k[3]): obj for k, obj in observed.live.items()
            if k[0] == "serving.kserve.io" and k[1] == "InferenceService"}
    waiting = staged(desired.spec.models, live)
    if not waiting:
        return desired, {}
    spec = without_canary(desired.spec, waiting)
    return Desired(spec=spec, objects=render(spec), revision=desired.revision,
                   resolutions=desired.resolutions), waiting


def note_staged(plan: Plan, desired: Desired, waiting: dict[str, str]) -> Plan:
    """The plan with a note for each model whose canary waits (shown like a rollout's)."""
    models = {m.key: m for m in desired.spec.models}
    for key, why in sorted(waiting.items()):
        model = models.get(key)
        if model is not None and model.canary is not None and key not in plan.rollouts:
            plan.rollouts[key] = RolloutNote(phase="Staged", step=0, steps=0, traffic=0,
                                             version=model.canary.version, message=why)
    return plan


@dataclass
class LiveRollouts:
    """A target's rollouts as stored in the cluster, seen from Git's side: `traffic` is the live
    canary traffic each running rollout decides (model key -> percent; plan against it, so the
    step is neither shown as drift nor healed back to Git's number; a state that may not steer
    keeps the live traffic), `notes` what each is doing.
    `warning`: the states could not be read (forbidden) and Git's traffic is used."""

    states: dict[str, RolloutState] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    notes: dict[str, RolloutNote] = field(default_factory=dict)
    warning: str = ""
    unreadable: dict[str, str] = field(default_factory=dict)  # model key -> why its stored state was skipped
    invalid: dict[str, InvalidState] = field(default_factory=dict)  # states that may not steer: traffic held
    traffic_notes: dict[str, str] = field(default_factory=dict)  # model key -> Git's traffic the rollout does not apply


def rollout_note(state: RolloutState, model: Model, now: float | None = None) -> RolloutNote:
    """The plan's and status's view of one rollout: 1-based step of n, and describe()'s line."""
    if state.strategy == "blueGreen":
        steps = 2
    else:
        steps = len(model.rollout.steps or (100,)) if model.rollout is not None else state.step + 1
    return RolloutNote(phase=state.phase, step=state.step + 1, steps=steps, traffic=state.traffic,
                       version=state.version, message=describe(state, model, now))


def _applies(state: RolloutState, model: Model) -> bool:
    """The controller drives a state only while Git still rolls out that version (a new canary
    version, no canary or no rollout ends or restarts it): only then is its traffic the live one."""
    return (model.rollout is not None and model.canary is not None and model.canary.version == state.version
            and model.stable != state.version)


def read_rollouts(cluster: Cluster, desired: Desired, namespace: str = INVENTORY_NAMESPACE,
                  now: float | None = None, live: dict[ObjectKey, dict[str, Any]] | None = None) -> LiveRollouts:
    """One GET of the target's rollout ConfigMap (none when no model of the repo has a
    spec.rollout, so a repo without rollouts costs no request). Missing: no rollouts; forbidden:
    a warning, and Git's traffic (a least-privilege reader still gets its diff). `live`: the
    target's observed objects, where a state's judging looks up the live canary (without: a GET)."""
    found = LiveRollouts()
    if not any(m.rollout is not None for m in desired.spec.models):
        return found
    try:
        stored = load_rollouts(cluster, desired.spec.config.name, namespace)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        found.warning = (f"cannot read the rollout states ({exc}); planning with Git's canary traffic, so a "
                         "running rollout's step shows as a change")
        return found
    models = {m.key: m for m in desired.spec.models}
    when = time.time() if now is None else now
    judged = judge_states(cluster, desired.spec.models, stored, live)
    for key, held in judged.invalid.items():  # never moves traffic: the live canary traffic stays
        found.invalid[key] = held
        found.unreadable[key] = held.reason
        found.traffic[key] = held.traffic
        found.notes[key] = RolloutNote(phase="Invalid", step=0, steps=0, traffic=held.traffic, version=held.version,
                                       message=held.message)
    for key, state in judged.states.items():
        found.states[key] = state
        model = models.get(key)
        if model is None:
            continue
        note = rollout_note(state, model, when)
        if _applies(state, model):
            percent = traffic_override(state)
            if percent is not None:
                found.traffic[key] = percent
        else:
            why = (f"Git's canary is {model.canary.version}" if model.canary is not None else "Git has no canary"
                   ) if model.rollout is not None else "Git has no rollout"
            note = RolloutNote(note.phase, note.step, note.steps, note.traffic, note.version,
                               f"{note.message} (stale: {why}; the controller ends or restarts it)")
        found.notes[key] = note
    for model in desired.spec.models:
        if model.key not in found.invalid and (said := traffic_note(model, found.states.get(model.key))) is not None:
            found.traffic_notes[model.key] = said
    return found


def with_rollouts(plan: Plan, rollouts: LiveRollouts) -> Plan:
    """`plan` with the notes of the rollouts of its models (and of Git's canary traffic that a
    rollout does not apply)."""
    keys = {m.key for m in plan.models}
    plan.rollouts = {k: v for k, v in rollouts.notes.items() if k in keys}
    for key, note in rollouts.traffic_notes.items():
        if key in keys and note not in plan.notes.get(key, []):
            plan.notes.setdefault(key, []).append(note)
    return plan


def live_plan(path: str | Path, revision: str | None = None, *, kubeconfig: str | None = None,
              context: str | None = None, prune: bool | None = None,
              inventory_namespace: str = INVENTORY_NAMESPACE, timeouts: Timeouts | None = None,
              warn: Callable[[str], None] | None = None, signers: SignerKeys | None = None) -> Plan:
    """The repo at `path` against the cluster, with each running rollout's live traffic taken as
    desired (and noted on the plan). `warn` hears why rollouts could not be read. `signers`:
    the commit must be signed by a key they allow (agent.pipeline.load_desired)."""
    desired = load_desired(path, revision, signers=signers)
    with Cluster.connect(kubeconfig, context, timeouts=timeouts) as cluster:
        # the rollout traffic changes no object's kind or namespace: observe first, so judging a
        # stored state finds the live canary among the objects listed
        observed = observe(cluster, desired.objects, desired.spec.config.name, inventory_namespace)
        rollouts = read_rollouts(cluster, desired, inventory_namespace, live=observed.live)
        if rollouts.warning and warn is not None:
            warn(rollouts.warning)
        desired = with_traffic(desired, rollouts.traffic)
        do_prune = desired.spec.config.policy.prune if prune is None else prune
        applied, waiting = stage_canaries(desired, observed)
        plan = with_rollouts(plan_against(cluster, applied, observed, prune=do_prune), rollouts)
        return note_staged(plan, desired, waiting)


def conflict_message(plan: Plan) -> str:
    refs = "; ".join(f"{c.ref} belongs to target {c.owner_conflict!r}" for c in plan.conflicts)
    return (f"refusing to take over {len(plan.conflicts)} object(s) of another target: {refs}. Two repos (or two "
            "directories of one repo) render the same object; remove it from one of them, or re-run with --adopt "
            "to take it over on purpose")


def reconcile(desired: Desired, cluster: Cluster, options: Options,
              progress: Callable[[ObjectResult], None] | None = None, *,
              observed: Observed | None = None, lease: TargetLease | None = None,
              writes: Callable[[Plan], bool] | None = None) -> Outcome:
    """Make the cluster match `desired` (already validated); see _reconcile_once.

    A one-shot apply (no `observed`) whose new KServe models had their canary held back waits
    up to options.stage_timeout for their stable revisions to turn Ready, then adds the
    canaries in a second pass (its results join the report). The controller does not wait: its
    next pass after the watch brings the Ready status does the same."""
    outcome, waiting = _reconcile_once(desired, cluster, options, progress, observed=observed, lease=lease,
                                       writes=writes)
    if not waiting or observed is not None or options.dry_run or not outcome.ok or options.stage_timeout <= 0:
        return outcome
    if not _wait_staged(cluster, desired, set(waiting), options):
        return outcome  # the plan's notes say why each canary still waits
    second, _still = _reconcile_once(desired, cluster, options, progress)
    outcome.report.results.extend(second.report.results)
    for key in waiting:
        note = outcome.plan.rollouts.get(key)
        if note is not None and note.phase == "Staged":
            outcome.plan.rollouts[key] = dataclasses.replace(
                note, message=f"canary {note.version} applied once the stable revision was Ready")
    outcome.requests = dict(cluster.requests)
    return outcome


def _wait_staged(cluster: Cluster, desired: Desired, keys: set[str], options: Options) -> bool:
    """Poll the staged models' InferenceServices (one LIST of the target's per namespace) until
    none is held back any more."""
    kind = cluster.kind("serving.kserve.io/v1beta1", "InferenceService")
    models = [m for m in desired.spec.models if m.key in keys]
    namespaces = sorted({m.namespace for m in models})
    ours = selector(desired.spec.config.name)
    deadline = time.monotonic() + options.stage_timeout
    while True:
        live = {(ns, obj["metadata"]["name"]): obj for ns in namespaces for obj in cluster.list(kind, ours, ns)}
        if not staged(models, live):
            return True
        if time.monotonic() > deadline or (options.stop is not None and options.stop.is_set()):
            return False
        time.sleep(0.5)


def _reconcile_once(desired: Desired, cluster: Cluster, options: Options,
                    progress: Callable[[ObjectResult], None] | None = None, *,
                    observed: Observed | None = None, lease: TargetLease | None = None,
                    writes: Callable[[Plan], bool] | None = None) -> tuple[Outcome, dict[str, str]]:
    """One pass; also returns model key -> why its canary was held back (stage_canaries).

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
    run = Run(desired, cluster, options)
    try:
        if observed is None:
            observed = observe(cluster, desired.objects, target, options.inventory_namespace)
        git_desired = desired
        desired, waiting, plan = _staged_plan(cluster, git_desired, observed, options, prune)
        _refuse(run, plan, observed, prune, started)
        if options.dry_run:
            outcome = Outcome(plan=plan, report=ApplyReport([ObjectResult(c, "skipped", "dry run") for c in plan.changed]))
            for result in outcome.report.results:
                run.record("object", sync=False, commit=desired.revision.commit, **object_record(result, True))
            run.closing("succeeded", plan, started)
        elif not plan.has_changes and not observed.stale:
            outcome = Outcome(plan=plan)  # a no-op writes nothing to the cluster: no Lease, no inventory
            if options.audit_noop:
                run.closing("succeeded", plan, started)
        elif writes is not None and not writes(plan):
            outcome = Outcome(plan=plan)  # reported by the caller, not written
        elif lease is not None:
            lease.check()
            outcome = write(run, plan, observed.inventory, observed.stale, lease, progress, started)
        else:
            with TargetLease(cluster, target, options.inventory_namespace, identity(), wait=options.lock_timeout) as lease:
                current = load_inventory(cluster, target, options.inventory_namespace)
                if current.resource_version != observed.inventory.resource_version:
                    # someone wrote this target between our plan and our Lease: plan again
                    observed = observe(cluster, git_desired.objects, target, options.inventory_namespace)
                    desired, waiting, plan = _staged_plan(cluster, git_desired, observed, options, prune)
                    _refuse(run, plan, observed, prune, started)
                outcome = write(run, plan, observed.inventory, observed.stale, lease, progress, started)
    finally:
        run.close()
    outcome.requests = dict(cluster.requests)
    return outcome, waiting


def _staged_plan(cluster: Cluster, git_desired: Desired, observed: Observed, options: Options,
                 prune: bool) -> tuple[Desired, dict[str, str], Plan]:
    """What is applied (new KServe canaries held back), why each waits, and its plan (noted)."""
    desired, waiting = stage_canaries(git_desired, observed)
    plan = plan_against(cluster, desired, observed, manager=options.manager, prune=prune,
                        concurrency=options.concurrency, adopt=options.adopt)
    return desired, waiting, note_staged(plan, git_desired, waiting)


def _refuse_own_state(desired: Desired, namespace: str) -> None:
    """The repo may not render the agent's own bookkeeping (its inventory, its rollout states or
    its Lease): applying it would overwrite what prune, rollouts and the lock rely on."""
    target = desired.spec.config.name
    own = {("", "ConfigMap", namespace, Inventory(target=target).name),
           ("", "ConfigMap", namespace, rollouts_name(target)),
           ("coordination.k8s.io", "Lease", namespace, lease_name(target))}
    clash = sorted(f"{k[1]}/{k[2]}/{k[3]}" for k in own & {object_key(o) for o in desired.objects})
    if clash:
        raise AgentError(f"the repo renders {', '.join(clash)}, the agent's own state for target {target!r}: "
                         "remove it from the repo")


def _refuse(run: Run, plan: Plan, observed: Observed, prune: bool, started: float) -> None:
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
    if run.auditing:
        run.closing("refused", plan, started, error=str(refusal))
        if not options.dry_run:
            with contextlib.suppress(ClusterError):  # the refusal stands; the anchor is a courtesy here
                run.save(observed.inventory)
    raise refusal
