"""Transition shim: observe, plan, refuse and write moved to agent.engine (Engine.plan / .sync /
.apply). The two functions below keep the old call shapes for cli, demo and the controller
until they call the Engine; this module is removed then."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from agent.apply import ObjectResult
from agent.cluster import INVENTORY_NAMESPACE, Cluster, TargetLease, Timeouts
from agent.engine import (
    Desired,
    Engine,
    EngineOptions,
    Observed,
    OwnershipConflict,
    SyncResult,
    conflict_message,
    identity,
    load_desired,
    note_staged,
    observe,
    observed_from,
    plan_against,
    read_rollouts,
    selector,
    stage_canaries,
    with_rollouts,
)
from agent.plan import Plan
from agent.rollout import LiveRollouts, rollout_note
from agent.source import SignerKeys

Options = EngineOptions
Outcome = SyncResult

__all__ = [
    "LiveRollouts", "Observed", "Options", "Outcome", "OwnershipConflict", "conflict_message", "identity", "live_plan",
    "note_staged", "observe", "observed_from", "plan_against", "read_rollouts", "reconcile", "rollout_note",
    "selector", "stage_canaries", "with_rollouts",
]


def live_plan(path: str | Path, revision: str | None = None, *, kubeconfig: str | None = None,
              context: str | None = None, prune: bool | None = None,
              inventory_namespace: str = INVENTORY_NAMESPACE, timeouts: Timeouts | None = None,
              warn: Callable[[str], None] | None = None, signers: SignerKeys | None = None) -> Plan:
    """Now: Engine(cluster, EngineOptions(prune=..., inventory_namespace=...)).plan(desired).plan."""
    desired = load_desired(path, revision, signers=signers)
    with Cluster.connect(kubeconfig, context, timeouts=timeouts) as cluster:
        eng = Engine(cluster, EngineOptions(prune=prune, inventory_namespace=inventory_namespace))
        observed = eng.observe(desired)
        rollouts = eng.rollouts(desired, observed)
        if rollouts.warning and warn is not None:
            warn(rollouts.warning)
        return eng.plan(desired, observed=observed, rollouts=rollouts).plan


def reconcile(desired: Desired, cluster: Cluster, options: EngineOptions,
              progress: Callable[[ObjectResult], None] | None = None, *,
              observed: Observed | None = None, lease: TargetLease | None = None,
              writes: Callable[[Plan], bool] | None = None) -> SyncResult:
    """Now: Engine(cluster, options).apply(desired, ...); the caller reads the rollouts itself
    here (rollout_traffic off), as cli and the controller do today."""
    eng = Engine(cluster, dataclasses.replace(options, rollout_traffic=False))
    return eng.apply(desired, progress, observed=observed, lease=lease, writes=writes)
