"""Parse and validate a model repo into a typed, pure Spec (no I/O beyond the bytes given)."""

from agent.spec._environment import UnknownEnvironment, environment, environment_of_cluster, for_environment
from agent.spec._k8s import CLUSTER_SCOPED
from agent.spec._kserve import autoscaler_annotations
from agent.spec._loader import DEFAULT_LOADER, Loader, is_manifest_path, load
from agent.spec._lookup import ModelLookupError, find_model
from agent.spec._model import gate_problems
from agent.spec._schema import artifact_uri_problem, schemas_dir
from agent.spec._types import (
    API_VERSION,
    GROUP,
    Analysis,
    AnalysisCheck,
    Autoscaling,
    Canary,
    Environment,
    Gate,
    Location,
    Manifest,
    MetricNames,
    MlflowSettings,
    Model,
    ModelVersion,
    Monitor,
    MonitorRule,
    Policy,
    PromotionPolicy,
    PruneBudget,
    Registries,
    RegistryKind,
    RegistryRef,
    RepositoryConfig,
    Resources,
    Rollout,
    ServingRuntime,
    Spec,
    group_of,
)
from agent.spec._yaml import MAX_FILE_BYTES
from agent.spec._yaml import Document as YamlDocument
from agent.spec._yaml import parse as parse_yaml

__all__ = [
    "API_VERSION",
    "CLUSTER_SCOPED",
    "DEFAULT_LOADER",
    "GROUP",
    "MAX_FILE_BYTES",
    "Analysis",
    "AnalysisCheck",
    "Autoscaling",
    "Canary",
    "Gate",
    "Loader",
    "Location",
    "Manifest",
    "MetricNames",
    "MlflowSettings",
    "Model",
    "ModelVersion",
    "Monitor",
    "MonitorRule",
    "Policy",
    "PruneBudget",
    "Registries",
    "RegistryKind",
    "RegistryRef",
    "RepositoryConfig",
    "Resources",
    "Rollout",
    "ServingRuntime",
    "Spec",
    "gate_problems",
    "group_of",
    "is_manifest_path",
    "load",
    "schemas_dir",
]

__all__ += ["artifact_uri_problem"]
__all__ += ["autoscaler_annotations"]
__all__ += ["ModelLookupError", "find_model"]
__all__ += ["Environment", "PromotionPolicy", "UnknownEnvironment", "environment", "environment_of_cluster",
            "for_environment"]
__all__ += ["YamlDocument", "parse_yaml"]  # the located YAML of other files the agent reads (agent.notify)
