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
    for_environment,
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
from agent.engine._judge import judge_states, read_rollouts
from agent.engine._options import EngineOptions
from agent.engine._planning import (
    OwnershipConflict,
    note_staged,
    stage_canaries,
    with_rollouts,
)
from agent.engine._status import (
    ENDED_BADLY,
    checks_json,
    ended_badly,
    invalid_status,
    last_sync,
    model_status,
    rollout_status,
    status_document,
    status_ok,
    unsettled,
    wait_healthy,
)
from agent.engine._sync import SyncResult, identity
from agent.engine._view import CacheView, ListView, Observed, View, observe, selector

__all__ = [
    "ENDED_BADLY",
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
    "ended_badly",
    "for_environment",
    "has_moving_refs",
    "has_registry_refs",
    "identity",
    "invalid_status",
    "judge_states",
    "last_sync",
    "load_desired",
    "model_status",
    "note_staged",
    "observe",
    "offline_plan",
    "read_rollouts",
    "registries_for",
    "resolutions_key",
    "resolve_registries",
    "revision_info",
    "rollout_status",
    "selector",
    "stage_canaries",
    "status_document",
    "status_ok",
    "unsettled",
    "wait_healthy",
    "with_rollouts",
    "with_traffic",
]
