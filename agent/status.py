"""Transition shim: `agent status` moved to agent.engine (Engine.status). Removed once cli and
the remaining tests import from agent.engine."""

from collections.abc import Callable
from typing import Any

from agent.cluster import INVENTORY_NAMESPACE, Cluster
from agent.engine import (
    ENDED_BADLY,
    SETTLED,
    Desired,
    checks_json,
    ended_badly,
    invalid_status,
    last_sync,
    model_status,
    rollout_status,
    status_ok,
    unsettled,
)
from agent.engine import wait_healthy as _wait_healthy

__all__ = [
    "ENDED_BADLY", "SETTLED", "checks_json", "ended_badly", "invalid_status", "last_sync", "model_status",
    "rollout_status", "status_ok", "unsettled", "wait_healthy",
]


def wait_healthy(desired: Desired, cluster: Cluster, timeout: float, interval: float = 1.0,
                 inventory_namespace: str = INVENTORY_NAMESPACE, *, allow_unknown: bool = True,
                 progress: Callable[[dict[str, Any], list[str]], None] | None = None,
                 select: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """agent.engine.wait_healthy, taking each status with this module's model_status (which
    tests replace)."""
    return _wait_healthy(desired, cluster, timeout, interval, inventory_namespace, allow_unknown=allow_unknown,
                         progress=progress, select=select, status_of=model_status)
