"""REST coordinates (plural, namespaced) of the kinds the agent manages.

Well-known kinds come from a table so a no-op reconcile needs no discovery requests;
anything else is discovered once per group/version and cached for the process.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.spec import group_of


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.api_version}" if group_of(self.api_version) else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"


_WELL_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Event"): ("events", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("serving.kserve.io/v1beta1", "InferenceService"): ("inferenceservices", True),
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): ("servingruntimes", True),
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): ("clusterservingruntimes", False),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheusrules", True),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitors", True),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("podmonitors", True),
}


def well_known(api_version: str, kind: str) -> KindInfo | None:
    hit = _WELL_KNOWN.get((api_version, kind))
    return KindInfo(api_version, kind, hit[0], hit[1]) if hit else None
