"""Edge: the API server. Raw-JSON reads, server-side apply, deletes, the inventory."""

from agent.cluster._client import FIELD_MANAGER, UNREACHABLE, Breaker, Cluster, ClusterError, Timeouts
from agent.cluster._inventory import (
    AUDIT_HASH,
    AUDIT_SEQ,
    INVENTORY_NAMESPACE,
    LAST_APPLY,
    LAST_INVALID,
    LAST_SYNC,
    Entry,
    Inventory,
    load_inventory,
    save_inventory,
    sync_mark,
)
from agent.cluster._kinds import KindInfo, well_known
from agent.cluster._lease import LeaseHeld, TargetLease, lease_name
from agent.cluster._rollouts import RolloutStates, load_rollouts, rollouts_name, save_rollouts
from agent.cluster._watch import watch

__all__ = [
    "AUDIT_HASH",
    "AUDIT_SEQ",
    "FIELD_MANAGER",
    "INVENTORY_NAMESPACE",
    "LAST_APPLY",
    "LAST_INVALID",
    "LAST_SYNC",
    "UNREACHABLE",
    "Breaker",
    "Cluster",
    "ClusterError",
    "Entry",
    "Inventory",
    "KindInfo",
    "LeaseHeld",
    "RolloutStates",
    "TargetLease",
    "Timeouts",
    "lease_name",
    "load_inventory",
    "load_rollouts",
    "rollouts_name",
    "save_inventory",
    "save_rollouts",
    "sync_mark",
    "watch",
    "well_known",
]
