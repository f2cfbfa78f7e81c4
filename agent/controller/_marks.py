"""What the controller records on the target's inventory ConfigMap, where `agent status` reads it:
the last-sync mark and the newest invalid commit. Each is one merge PATCH (loop thread)."""

from __future__ import annotations

import logging
import time

from agent.cluster import LAST_INVALID, LAST_SYNC, Cluster, ClusterError, Inventory, sync_mark
from agent.engine import last_sync
from agent.errors import AgentError

log = logging.getLogger("modelops.controller")


def _path(inventory: Inventory) -> str:
    return f"/api/v1/namespaces/{inventory.namespace}/configmaps/{inventory.name}"


def mark_synced(cluster: Cluster, inventory: Inventory, commit: str, source: str, every: float) -> bool:
    """Keep the inventory's last-sync mark current: a pass that wrote has just saved it; one that
    found nothing to do refreshes it when it names another commit or writer, or is older than
    `every` seconds (so a quiet resync costs one request at most that often). Guarded by the
    resourceVersion. False when the inventory must be read again (a conflict, or it is gone)."""
    if inventory.resource_version is None:
        return True  # nothing applied yet: no inventory to mark
    mark = last_sync(inventory.annotations, time.time())  # None: none, or one that does not read
    if mark is not None and mark["ageSeconds"] < every and (
            mark.get("commit"), mark.get("by"), mark.get("source")) == (commit, "controller", source):
        return True
    value = sync_mark(commit, "controller", source)
    body = {"metadata": {"resourceVersion": inventory.resource_version, "annotations": {LAST_SYNC: value}}}
    try:
        patched = cluster.request("PATCH", _path(inventory), body=body, content_type="application/merge-patch+json",
                                  retries=0)
    except (ClusterError, AgentError) as exc:
        log.debug("could not refresh the last-sync mark: %s", exc)
        return False
    inventory.annotations[LAST_SYNC] = value
    inventory.resource_version = patched["metadata"]["resourceVersion"]
    return True


def annotate_invalid(cluster: Cluster, inventory: Inventory, value: str | None) -> None:
    """Record the invalid commit on the inventory (None: remove it, when it is there)."""
    if inventory.resource_version is None or (value is None and LAST_INVALID not in inventory.annotations):
        return
    body = {"metadata": {"annotations": {LAST_INVALID: value}}}
    try:
        patched = cluster.request("PATCH", _path(inventory), body=body, content_type="application/merge-patch+json")
    except (ClusterError, AgentError) as exc:
        log.warning("could not record the invalid commit on the inventory: %s", exc)
        return
    if value is None:
        inventory.annotations.pop(LAST_INVALID, None)
    else:
        inventory.annotations[LAST_INVALID] = value
    inventory.resource_version = patched["metadata"]["resourceVersion"]
