"""Parse and validate a model repo into a typed, pure Spec (no I/O beyond the bytes given)."""

from agent.spec._k8s import CLUSTER_SCOPED
from agent.spec._loader import is_manifest_path, load
from agent.spec._types import (
    API_VERSION,
    GROUP,
    Autoscaling,
    Canary,
    Gate,
    Location,
    Manifest,
    MetricNames,
    Model,
    ModelVersion,
    Monitor,
    MonitorRule,
    Policy,
    PruneBudget,
    RepositoryConfig,
    Resources,
    ServingRuntime,
    Spec,
    group_of,
)

__all__ = [
    "API_VERSION", "CLUSTER_SCOPED", "GROUP", "Autoscaling", "Canary", "Gate", "Location",
    "Manifest", "MetricNames", "Model", "ModelVersion", "Monitor", "MonitorRule", "Policy",
    "PruneBudget", "RepositoryConfig", "Resources", "ServingRuntime", "Spec", "group_of", "is_manifest_path",
    "load",
]
