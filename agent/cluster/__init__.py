"""Edge: the API server. Raw-JSON reads, server-side apply, deletes, the inventory."""

from agent.cluster._client import FIELD_MANAGER, Cluster, ClusterError
from agent.cluster._inventory import (
    AUDIT_HASH,
    AUDIT_SEQ,
    INVENTORY_NAMESPACE,
    LAST_APPLY,
    Entry,
    Inventory,
    load_inventory,
    save_inventory,
)
from agent.cluster._kinds import KindInfo, well_known

__all__ = [
    "AUDIT_HASH", "AUDIT_SEQ", "FIELD_MANAGER", "INVENTORY_NAMESPACE", "LAST_APPLY", "Cluster",
    "ClusterError", "Entry", "Inventory", "KindInfo", "load_inventory", "save_inventory",
    "well_known",
]
