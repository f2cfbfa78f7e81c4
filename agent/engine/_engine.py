"""The one entry every front end calls (gitops-engine's pkg/engine): an Engine per cluster and
target, its options the filters and policies; plan() decides, sync() writes.

    eng = Engine(cluster, EngineOptions(...))          # view: ListView (LISTs) or CacheView (watch cache)
    planned = eng.plan(desired)                         # planned.plan: the public, redacted Plan
    result = eng.sync(planned)                          # SyncResult: the plan, each object's result
    result = eng.apply(desired)                         # plan + sync + the one-shot canary staging wait
    doc = eng.status(desired)                           # the `agent status` document

No module-level state: one process may hold an Engine per (cluster, target) side by side.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.apply import ApplyReport, ObjectResult, SyncTask, tasks_for
from agent.cluster import Cluster, TargetLease, load_inventory
from agent.desired import Desired, with_traffic
from agent.engine._judge import read_rollouts
from agent.engine._options import EngineOptions
from agent.engine._planning import note_staged, plan_against, refusal, refuse_own_state, stage_canaries, with_rollouts
from agent.engine._status import model_status
from agent.engine._sync import Run, SyncResult, identity, object_record, refuse, write
from agent.engine._view import ListView, Observed, View, selector
from agent.errors import AgentError
from agent.plan import Plan
from agent.render import object_key
from agent.rollout import LiveRollouts, staged

Progress = Callable[[ObjectResult], None]
Gate = Callable[[Plan], bool]  # False: report the plan, write nothing (drift under detect, a follower)


@dataclass(frozen=True)
class SyncPlan:
    """A plan and what writing it needs: `plan` is the public, redacted report; the tasks (the
    unredacted objects) stay with the engine."""

    plan: Plan
    desired: Desired  # what is applied: the rollout traffic rendered in, staged canaries held back, the selection
    git: Desired  # the desired state as asked (before staging)
    observed: Observed
    waiting: dict[str, str] = field(default_factory=dict)  # model key -> why its canary is held back
    rollouts: LiveRollouts = field(default_factory=LiveRollouts)
    prune: bool = False

    def tasks(self) -> list[SyncTask]:
        """The work items (unredacted), built only when the plan is written: a steady-state
        pass that writes nothing builds none."""
        return tasks_for(self.plan, {object_key(x): x for x in self.desired.objects}, self.observed.live,
                         self.observed.foreign)


class Engine:
    def __init__(self, cluster: Cluster, options: EngineOptions | None = None, view: View | None = None) -> None:
        self.cluster = cluster
        self.options = options if options is not None else EngineOptions()
        self.view: View = view if view is not None else ListView(cluster, self.options.inventory_namespace)

    # --- deciding -------------------------------------------------------------------------------

    def rollouts(self, desired: Desired, observed: Observed | None = None) -> LiveRollouts:
        """The target's rollout states (none read unless options.rollout_traffic)."""
        if not self.options.rollout_traffic:
            return LiveRollouts()
        found = read_rollouts(self.cluster, desired, self.options.inventory_namespace,
                              live=observed.live if observed is not None else None)
        if found.warning and self.options.warn is not None:
            self.options.warn(found.warning)
        return found

    def observe(self, desired: Desired, view: View | None = None) -> Observed:
        """The target's live state as `view` sees it (default: the engine's own view)."""
        return (view or self.view).observe(desired.objects, self._target(desired))

    def plan(self, desired: Desired, *, view: View | None = None,
             rollouts: LiveRollouts | None = None) -> SyncPlan:
        """`desired` against the live view (`view`, e.g. the controller's watch cache for this
        pass; default: the engine's own): with the running rollouts' traffic (and their notes),
        new KServe canaries held back (noted), only the selected objects. Nothing is written."""
        if desired.spec.environments:  # each environment is its own target: never the whole repo at once
            names = ", ".join(e.name for e in desired.spec.environments)
            raise AgentError(f"the repo declares environments ({names}): plan one of them (--env NAME)")
        # the rollout traffic changes no object's kind or namespace: observe first, so judging
        # a stored state finds the live canary among the objects listed
        observed = self.observe(desired, view)
        if rollouts is None:
            rollouts = self.rollouts(desired, observed)
        git = with_traffic(desired, rollouts.traffic)
        prune = git.spec.config.policy.prune if self.options.prune is None else self.options.prune
        return self._planned(git, observed, rollouts, prune)

    def _planned(self, git: Desired, observed: Observed, rollouts: LiveRollouts, prune: bool) -> SyncPlan:
        o = self.options
        applied, waiting = stage_canaries(git, observed) if o.stage_canaries else (git, {})
        if o.select.active:
            applied = dataclasses.replace(applied, objects=[x for x in applied.objects if o.select.object(x)])
        plan = plan_against(self.cluster, applied, observed, manager=o.manager, prune=prune,
                            concurrency=o.concurrency, adopt=o.adopt)
        if self.options.rollout_traffic:
            plan = with_rollouts(plan, rollouts)
        plan = note_staged(plan, git, waiting)
        return SyncPlan(plan, applied, git, observed, waiting, rollouts, prune)

    # --- writing --------------------------------------------------------------------------------

    def sync(self, planned: SyncPlan, progress: Progress | None = None, *, lease: TargetLease | None = None,
             writes: Gate | None = None) -> SyncResult:
        """Write `planned` (already refused if it must be: PruneRefused, OwnershipConflict, both
        audited, carrying the plan). `lease`: a Lease the caller holds across syncs (the
        controller's); without one the target's Lease is taken for the write, and when someone
        wrote the target since the plan, it is planned again under the Lease."""
        refuse_own_state(planned.git, self.options.inventory_namespace)
        return self._write(planned, progress, lease, writes)

    def _write(self, planned: SyncPlan, progress: Progress | None, lease: TargetLease | None,
               writes: Gate | None) -> SyncResult:
        """sync() once the desired state is known not to hold the agent's own state."""
        o, cluster = self.options, self.cluster
        started = time.monotonic()
        run = Run(planned.git, cluster, o)
        try:
            self._check(run, planned, started)
            plan, observed = planned.plan, planned.observed
            if o.dry_run:
                result = SyncResult(plan=plan, report=ApplyReport([ObjectResult(c, "skipped", "dry run")
                                                                   for c in plan.changed]))
                for r in result.report.results:
                    run.record("object", sync=False, commit=planned.git.revision.commit, **object_record(r, True))
                run.closing("succeeded", plan, started)
            elif not plan.has_changes and not observed.stale:
                result = SyncResult(plan=plan)  # a no-op writes nothing to the cluster: no Lease, no inventory
                if o.audit_noop:
                    run.closing("succeeded", plan, started)
            elif writes is not None and not writes(plan):
                result = SyncResult(plan=plan)  # reported by the caller, not written
            elif lease is not None:
                lease.check()
                result = write(run, plan, planned.tasks(), observed.inventory, observed.stale, lease, progress,
                               started)
            else:
                target = self._target(planned.git)
                with TargetLease(cluster, target, o.inventory_namespace, identity(), wait=o.lock_timeout) as held:
                    current = load_inventory(cluster, target, o.inventory_namespace)
                    if current.resource_version != observed.inventory.resource_version:
                        # someone wrote this target between our plan and our Lease: plan again
                        # (from the engine's own view: the API server, not a cache that may lag)
                        planned = self._planned(planned.git, self.observe(planned.git), planned.rollouts,
                                                planned.prune)
                        self._check(run, planned, started)
                    result = write(run, planned.plan, planned.tasks(), planned.observed.inventory,
                                   planned.observed.stale, held, progress, started)
        finally:
            run.close()
        result.requests = dict(cluster.requests)
        return result

    def _check(self, run: Run, planned: SyncPlan, started: float) -> None:
        o = self.options
        refused = refusal(planned.plan, planned.observed, planned.git, prune=planned.prune, adopt=o.adopt,
                          allow_mass_prune=o.allow_mass_prune)
        if refused is not None:
            refuse(run, refused, planned.observed, started)

    def apply(self, desired: Desired, progress: Progress | None = None, *, view: View | None = None,
              lease: TargetLease | None = None, writes: Gate | None = None) -> SyncResult:
        """plan() then sync(). When new KServe models had their canary held back, a one-shot apply
        (options.stage_timeout > 0) waits up to that long for their stable revisions to turn
        Ready, then adds the canaries in a second pass (its results join the report). The
        controller (stage_timeout 0) does not wait: its next pass after the watch brings the
        Ready status does."""
        refuse_own_state(desired, self.options.inventory_namespace)  # before any request
        planned = self.plan(desired, view=view)
        result = self._write(planned, progress, lease, writes)
        o = self.options
        if not planned.waiting or o.dry_run or not result.ok or o.stage_timeout <= 0:
            return result
        if not self._wait_staged(planned.git, set(planned.waiting)):
            return result  # the plan's notes say why each canary still waits
        second = self._write(self.plan(desired, rollouts=planned.rollouts), progress, None, None)
        result.report.results.extend(second.report.results)
        for key in planned.waiting:
            note = result.plan.rollouts.get(key)
            if note is not None and note.phase == "Staged":
                result.plan.rollouts[key] = dataclasses.replace(
                    note, message=f"canary {note.version} applied once the stable revision was Ready")
        result.requests = dict(self.cluster.requests)
        return result

    def _wait_staged(self, desired: Desired, keys: set[str]) -> bool:
        """Poll the staged models' InferenceServices (one LIST of the target's per namespace) until
        none is held back any more."""
        kind = self.cluster.kind("serving.kserve.io/v1beta1", "InferenceService")
        models = [m for m in desired.spec.models if m.key in keys]
        namespaces = sorted({m.namespace for m in models})
        ours = selector(desired.spec.config.name)
        deadline = time.monotonic() + self.options.stage_timeout
        stop = self.options.stop
        while True:
            live = {(ns, obj["metadata"]["name"]): obj for ns in namespaces
                    for obj in self.cluster.list(kind, ours, ns)}
            if not staged(models, live):
                return True
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return False
            time.sleep(0.5)

    # --- reading --------------------------------------------------------------------------------

    def status(self, desired: Desired, *, rollouts: LiveRollouts | None = None,
               warn: Callable[[str], None] | None = None) -> dict[str, object]:
        """The `agent status` document (agent.engine.model_status)."""
        return model_status(desired, self.cluster, self.options.inventory_namespace, rollouts=rollouts,
                            warn=warn if warn is not None else self.options.warn)

    def _target(self, desired: Desired) -> str:
        target = desired.spec.config.name
        if self.options.target and target != self.options.target:
            raise AgentError(f"this engine syncs target {self.options.target!r}, not {target!r}")
        return target
