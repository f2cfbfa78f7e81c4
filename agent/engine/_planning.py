"""Planning against a live view: the server-side dry-run as the plan's dry-runner, canary
staging, rollout notes, and the checks that refuse a plan before any write."""

from __future__ import annotations

from typing import Any

from agent.apply import PruneRefused, check_prune_budget
from agent.cluster import FIELD_MANAGER, Cluster, ClusterError, Inventory, lease_name, rollouts_name
from agent.desired import Desired, revision_info
from agent.engine._view import Observed
from agent.errors import AgentError
from agent.plan import Plan, RolloutNote
from agent.plan import live_plan as live_plan_of
from agent.render import object_key, render
from agent.rollout import LiveRollouts, staged, without_canary


class OwnershipConflict(AgentError):
    """Objects of the plan carry another target's ownership label; apply refuses them."""

    plan: Plan | None = None


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


def with_rollouts(plan: Plan, rollouts: LiveRollouts) -> Plan:
    """`plan` with the notes of the rollouts of its models (and of Git's canary traffic that a
    rollout does not apply)."""
    keys = {m.key for m in plan.models}
    plan.rollouts = {k: v for k, v in rollouts.notes.items() if k in keys}
    for key, note in rollouts.traffic_notes.items():
        if key in keys and note not in plan.notes.get(key, []):
            plan.notes.setdefault(key, []).append(note)
    return plan


def conflict_message(plan: Plan) -> str:
    refs = "; ".join(f"{c.ref} belongs to target {c.owner_conflict!r}" for c in plan.conflicts)
    return (f"refusing to take over {len(plan.conflicts)} object(s) of another target: {refs}. Two repos (or two "
            "directories of one repo) render the same object; remove it from one of them, or re-run with --adopt "
            "to take it over on purpose")


def refuse_own_state(desired: Desired, namespace: str) -> None:
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


def refusal(plan: Plan, observed: Observed, desired: Desired, *, prune: bool, adopt: bool,
            allow_mass_prune: bool) -> OwnershipConflict | PruneRefused | None:
    """Why the plan may not be written (another target's objects, too many deletions), or None."""
    found: OwnershipConflict | PruneRefused | None = None
    if plan.conflicts and not adopt:
        found = OwnershipConflict(conflict_message(plan))
    elif prune and not allow_mass_prune:
        budget = desired.spec.config.policy.prune_budget
        try:
            check_prune_budget(plan, len(observed.inventory.entries), budget.max_fraction, budget.max_count)
        except PruneRefused as refused:
            found = refused
    if found is not None:
        found.plan = plan
    return found
