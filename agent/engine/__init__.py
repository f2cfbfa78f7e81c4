"""The engine: the one entry every front end (CLI, controller, demo, benches) calls.

    desired = load_desired(path, revision)             # source -> spec -> render (+ registries)
    eng = Engine(cluster, EngineOptions(...), view)    # view: ListView (CLI) or CacheView (controller)
    planned = eng.plan(desired)                        # planned.plan: the public, redacted Plan
    result = eng.sync(planned)  /  eng.apply(desired)  # SyncResult
    eng.status(desired)                                # the `agent status` document

Filters (Selection), rollout traffic, canary staging, prune, dry-run, conflicts and adoption
are EngineOptions fields. The work items (agent.apply.SyncTask, unredacted) never leave it.
"""

from agent.desired import (
    Desired,
    cache_root,
    has_moving_refs,
    has_registry_refs,
    load_desired,
    offline_plan,
    registries_for,
    resolutions_key,
    resolve_registries,
    revision_info,
    with_traffic,
)
from agent.engine._engine import Engine, SyncPlan
from agent.engine._judge import judge_states, live_canary, read_rollouts
from agent.engine._options import EngineOptions
from agent.engine._planning import (
    OwnershipConflict,
    conflict_message,
    note_staged,
    plan_against,
    stage_canaries,
    with_rollouts,
)
from agent.engine._status import (
    ENDED_BADLY,
    SETTLED,
    checks_json,
    ended_badly,
    invalid_status,
    last_sync,
    model_status,
    rollout_status,
    status_ok,
    unsettled,
    wait_healthy,
)
from agent.engine._sync import SyncResult, identity, model_versions, object_record
from agent.engine._view import CacheView, ListView, Observed, View, observe, observed_from, selector

__all__ = [
    "ENDED_BADLY",
    "SETTLED",
    "CacheView",
    "Desired",
    "Engine",
    "EngineOptions",
    "ListView",
    "Observed",
    "OwnershipConflict",
    "SyncPlan",
    "SyncResult",
    "View",
    "cache_root",
    "checks_json",
    "conflict_message",
    "ended_badly",
    "has_moving_refs",
    "has_registry_refs",
    "identity",
    "invalid_status",
    "judge_states",
    "last_sync",
    "live_canary",
    "load_desired",
    "model_status",
    "model_versions",
    "note_staged",
    "object_record",
    "observe",
    "observed_from",
    "offline_plan",
    "plan_against",
    "read_rollouts",
    "registries_for",
    "resolutions_key",
    "resolve_registries",
    "revision_info",
    "rollout_status",
    "selector",
    "stage_canaries",
    "status_ok",
    "unsettled",
    "wait_healthy",
    "with_rollouts",
    "with_traffic",
]
