"""The validated, typed picture of a model repo at one revision (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

GROUP = "modelops.dev"
API_VERSION = f"{GROUP}/v1alpha1"

Backend = Literal["kserve", "kubernetes"]


def group_of(api_version: str) -> str:
    """The API group of an apiVersion ("" for the core group: "v1")."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True)
class Location:
    """Where a spec object was declared, for messages and the `modelops.dev/source` annotation."""

    file: str
    line: int


@dataclass(frozen=True)
class Resources:
    """One layer of sizing (a Model's, a ServingRuntime's or the repo defaults'). None means
    unset: the next layer decides. `gpu=0` is a value (no GPU), not unset."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


RegistryKind = Literal["mlflow", "gto"]


@dataclass(frozen=True)
class RegistryRef:
    """A model version named in a model registry instead of by URI: an MLflow registered
    model's `version` or `alias`, or a GTO artifact's `version` or `stage` (read from the tags
    of `repo`, default the model repo itself). Exactly one selector is set."""

    kind: RegistryKind
    name: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    repo: str | None = None

    @property
    def selector(self) -> str:
        """`version=13`, `alias=champion` or `stage=prod`: what the reference asks for."""
        for what in ("version", "alias", "stage"):
            value = getattr(self, what)
            if value is not None:
                return f"{what}={value}"
        return ""

    def __str__(self) -> str:
        """`mlflow fraud-scorer@champion`, `mlflow fraud-scorer/13`, `gto fraud-scorer#prod`,
        `gto fraud-scorer@v1.2.0 (repo R)`: the registry's own shorthand."""
        if self.kind == "mlflow":
            text = f"mlflow {self.name}@{self.alias}" if self.alias is not None else f"mlflow {self.name}/{self.version}"
        else:
            text = f"gto {self.name}#{self.stage}" if self.stage is not None else f"gto {self.name}@{self.version}"
        return f"{text} (repo {self.repo})" if self.repo else text


@dataclass(frozen=True)
class ModelVersion:
    """One version of a Model. A version with `registry` has `uri` "" and no digest until the
    reference is resolved (agent.resolve); `location` is where its entry (its `registry:` key,
    when it has one) was declared, for messages of that later step. `resolved` is the immutable
    registry version the reference named when resolved (None before, and without `registry`):
    the renderer records it so a plan can tell that an alias moved."""

    version: str
    uri: str
    digest: str | None = None
    evaluation: dict[str, float] = field(default_factory=dict)
    registry: RegistryRef | None = None
    location: Location | None = field(default=None, compare=False)
    resolved: str | None = None


@dataclass(frozen=True)
class Canary:
    version: str
    traffic: int


@dataclass(frozen=True)
class Autoscaling:
    min: int
    max: int
    metric: str = "cpu"
    target: int = 80


@dataclass(frozen=True)
class Gate:
    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ServingRuntime:
    name: str
    image: str
    formats: tuple[str, ...]
    protocol: str = "v2"
    port: int = 8080
    metrics_port: int | None = None
    metrics_path: str = "/metrics"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: Resources = Resources()
    labels: dict[str, str] = field(default_factory=dict)
    location: Location = Location("", 0)


@dataclass(frozen=True)
class AnalysisCheck:
    """An inline PromQL check of a rollout: `query` gives one number for the new version
    (placeholders {namespace}, {model}, {version}, {track}, {interval} are filled in), which
    must stay within min/max."""

    name: str
    query: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Analysis:
    """What gates each step: this model's Monitor rules (by rule name), evaluated on the new
    version's series only, plus inline checks; a step is judged only once the new version has
    served `min_requests` requests in it, so a quiet canary is not judged on no data."""

    rules: tuple[str, ...] = ()
    checks: tuple[AnalysisCheck, ...] = ()
    min_requests: int = 0


@dataclass(frozen=True)
class Rollout:
    """How the canary version of a Model reaches 100%: in metric-gated traffic steps (canary),
    or beside the old version behind a preview Service and then switched at once (blueGreen).
    interval/scale_down_delay are Prometheus durations; *_seconds their values."""

    strategy: Literal["canary", "blueGreen"]
    steps: tuple[int, ...] = ()
    interval: str = "5m"
    interval_seconds: float = 300.0
    analysis: Analysis = Analysis()
    max_failed_checks: int = 1
    on_success: Literal["commit", "pullRequest", "none"] = "commit"
    on_failure: Literal["rollback"] = "rollback"
    revert_pull_request: bool = False
    scale_down_delay: str = "10m"
    scale_down_delay_seconds: float = 600.0


@dataclass(frozen=True)
class Model:
    name: str
    namespace: str
    format: str
    versions: dict[str, ModelVersion]
    stable: str
    backend: Backend
    stage: str
    runtime: str | None = None
    format_version: str | None = None
    canary: Canary | None = None
    resources: Resources = Resources()
    replicas: int | None = None
    autoscaling: Autoscaling | None = None
    gates: tuple[Gate, ...] = ()
    owner: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    location: Location = Location("", 0)
    rollout: Rollout | None = None
    # serving versions named by a registry reference whose promotion gates miss a hand-written
    # `evaluation` value: checked against the run's metrics once resolved, not at load
    deferred_gates: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class MonitorRule:
    name: str
    type: Literal["latency", "errorRate", "drift"]
    threshold: float
    window: str
    for_: str
    severity: str
    action: str
    description: str | None = None
    quantile: float = 0.95
    feature: str | None = None
    method: str = "psi"
    # action "retrain": the Job template file (repo path), its parsed batch/v1 Job, and the
    # cooldown (at most one Job per model and rule within it)
    retrain_job_template: str | None = None
    retrain_job: dict[str, Any] | None = field(default=None, compare=False)
    retrain_cooldown: str = "6h"
    retrain_cooldown_seconds: float = 21600.0


@dataclass(frozen=True)
class Monitor:
    name: str
    namespace: str
    model: str
    rules: tuple[MonitorRule, ...]
    labels: dict[str, str] = field(default_factory=dict)
    location: Location = Location("", 0)

    @property
    def model_key(self) -> str:
        return f"{self.namespace}/{self.model}"


@dataclass(frozen=True)
class MetricNames:
    latency_histogram: str = "request_predict_seconds"
    requests_total: str = "request_total"
    errors_total: str = "request_errors_total"
    drift_score: str = "model_feature_drift_score"


@dataclass(frozen=True)
class PruneBudget:
    max_fraction: float = 0.2
    max_count: int = 50


@dataclass(frozen=True)
class Policy:
    allowed_namespaces: tuple[str, ...] = ()
    allowed_kinds: tuple[str, ...] = (
        "Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service",
        "rbac.authorization.k8s.io/Role", "rbac.authorization.k8s.io/RoleBinding",
        "networking.k8s.io/NetworkPolicy", "policy/PodDisruptionBudget",
    )
    prune: bool = False
    prune_budget: PruneBudget = PruneBudget()
    allow_cluster_admin: bool = False  # a (Cluster)RoleBinding to cluster-admin


@dataclass(frozen=True)
class MlflowSettings:
    """How to reach the MLflow registry. No tracking URI: the agent's MLFLOW_TRACKING_URI
    (read when resolving, not when validating). The token is named, never written: an
    environment variable or a file on the agent's machine."""

    tracking_uri: str | None = None
    token_env: str | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class Registries:
    """`spec.registries` of the RepositoryConfig."""

    mlflow: MlflowSettings = MlflowSettings()


@dataclass(frozen=True)
class RepositoryConfig:
    name: str = "default"
    default_namespace: str = "default"
    default_backend: Backend = "kserve"
    default_stage: str = "production"
    default_resources: Resources = Resources()
    monitor_for: str = "5m"
    monitor_window: str = "5m"
    policy: Policy = Policy()
    metrics: MetricNames = MetricNames()
    exclude: tuple[str, ...] = ()
    location: Location | None = None
    registries: Registries = Registries()


@dataclass(frozen=True)
class Manifest:
    """A plain Kubernetes object passed through from the repo (serving infra)."""

    body: dict[str, Any]
    location: Location

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return str(ns) if ns else None


PromotionPolicy = Literal["manual", "pullRequest", "commit"]


@dataclass(frozen=True)
class Environment:
    """One environment of the repo: the clusters it deploys to (in wave order), the environment
    it promotes from and the soak a version needs there, and its models with this
    environment's overlays applied (every model of the repo, validated, sorted by key)."""

    name: str
    clusters: tuple[str, ...]
    models: tuple[Model, ...] = ()
    promotes_from: str | None = None
    soak: str = "0s"
    soak_seconds: float = 0.0
    prometheus: str | None = None
    promotion: PromotionPolicy = "manual"
    overlays: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model key -> fields this environment sets
    location: Location = Location("", 0)

    def model(self, namespace: str, name: str) -> Model | None:
        for m in self.models:
            if m.namespace == namespace and m.name == name:
                return m
        return None


@dataclass(frozen=True)
class Spec:
    """Everything a repo declares at one revision, validated and with defaults applied.
    `environments`: what the repo's Environment documents declare (none: one environment, the
    repo as it is). `environment`: the name of the one environment this Spec deploys, when it
    was derived by agent.spec.for_environment ("" otherwise)."""

    config: RepositoryConfig
    models: tuple[Model, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    runtimes: tuple[ServingRuntime, ...] = ()
    manifests: tuple[Manifest, ...] = ()
    environments: tuple[Environment, ...] = ()
    environment: str = ""

    def model(self, namespace: str, name: str) -> Model | None:
        for m in self.models:
            if m.namespace == namespace and m.name == name:
                return m
        return None
