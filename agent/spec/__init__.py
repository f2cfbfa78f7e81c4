"""Parse and validate a model repo into a typed, pure Spec (no I/O beyond the bytes given)."""

from agent.spec._k8s import CLUSTER_SCOPED
from agent.spec._loader import DEFAULT_LOADER, Loader, is_manifest_path, load
from agent.spec._schema import schemas_dir
from agent.spec._types import (
    API_VERSION,
    GROUP,
    Analysis,
    AnalysisCheck,
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
    Rollout,
    ServingRuntime,
    Spec,
    group_of,
)
from agent.spec._yaml import MAX_FILE_BYTES

__all__ = [
    "API_VERSION", "Analysis", "AnalysisCheck", "CLUSTER_SCOPED", "DEFAULT_LOADER", "GROUP", "MAX_FILE_BYTES", "Autoscaling", "Canary", "Gate", "Loader", "Location",
    "Manifest", "MetricNames", "Model", "ModelVersion", "Monitor", "MonitorRule", "Policy",
    "PruneBudget", "RepositoryConfig", "Resources", "Rollout", "ServingRuntime", "Spec", "group_of", "is_manifest_path",
    "load", "schemas_dir",
]
