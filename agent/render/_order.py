"""Apply order: what others depend on first (namespaces, CRDs), monitors last; deletion runs in
reverse. `agent render` prints objects in this order, so its output can be piped to kubectl."""

from __future__ import annotations

from typing import Any

from agent.render._meta import object_key

_PHASES: dict[str, int] = {
    "CustomResourceDefinition": 0, "Namespace": 0,
    "ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "Role": 1, "ClusterRole": 1,
    "RoleBinding": 2, "ClusterRoleBinding": 2, "ServingRuntime": 2, "ClusterServingRuntime": 2,
    "PersistentVolumeClaim": 2, "NetworkPolicy": 2,
    "Deployment": 3, "InferenceService": 3, "Service": 3,
    "HorizontalPodAutoscaler": 4, "PodDisruptionBudget": 4, "Ingress": 4,
    "PrometheusRule": 5, "ServiceMonitor": 5, "PodMonitor": 5,
}


def phase(kind: str) -> int:
    """Apply phase of a kind (unknown kinds go with the workloads)."""
    return _PHASES.get(kind, 3)


def in_apply_order(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda o: (phase(str(o.get("kind", ""))), object_key(o)))
