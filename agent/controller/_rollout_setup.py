"""The controller's rollout driver, wired to its config, and the Events it posts on a model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from functools import partial

from agent.apply import make_event
from agent.cluster import Cluster, ClusterError
from agent.controller._config import RunConfig
from agent.controller._metrics import Metrics
from agent.controller._rollouts import RolloutDriver, WriteBack
from agent.errors import AgentError
from agent.metrics_source import Prometheus
from agent.source import Mirror
from agent.spec import Model


def rollout_driver(config: RunConfig, cluster: Cluster, mirror: Mirror | None, metrics: Metrics,
                   record: Callable[..., None], labels: Mapping[str, str] | None = None) -> RolloutDriver:
    """`labels` (a fleet member's cluster and environment) are named at the end of its Events."""
    prometheus = Prometheus(config.prometheus_url) if config.prometheus_url else None
    return RolloutDriver(cluster, config.inventory_namespace, prometheus, record=record,
                         event=partial(model_event, cluster, where=rollout_where(labels)),
                         metric=metrics.rollout, write_back=write_back_of(config, mirror),
                         invalid_metric=metrics.rollout_state_invalid, held_metric=metrics.rollout_held,
                         environment=(labels or {}).get("environment") or None,
                         writes_success=config.writes_rollout_success)


def write_back_of(config: RunConfig, mirror: Mirror | None) -> WriteBack | None:
    """How the controller writes to the Git remote it follows (None: a working copy)."""
    if config.watch_dir is not None:
        return None
    credentials = config.credentials
    return WriteBack(
        url=config.repo, branch=config.branch, path=config.path,
        token=(credentials.token if credentials is not None and credentials.has_token else lambda: None),
        username=credentials.username if credentials is not None else "x-access-token",
        ca_file=credentials.ca_file if credentials is not None else None,
        forge_kind=config.forge, forge_api_url=config.forge_api_url,
        ssh_command=mirror.ssh_command() if mirror is not None and credentials is not None
        and credentials.has_ssh else None)


def rollout_where(labels: Mapping[str, str] | None) -> str:
    if not labels:
        return ""
    return f" (cluster {labels.get('cluster', '')}, environment {labels.get('environment', '')})"


def model_event(cluster: Cluster, model: Model, reason: str, message: str, warning: bool, where: str = "") -> None:
    """An Event on the model's serving object, where `kubectl describe` shows it; `where` is
    added to the message (a fleet member's cluster and environment)."""
    if model.backend == "kserve":
        involved = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"}
    else:
        involved = {"apiVersion": "v1", "kind": "Service"}
    involved.update(namespace=model.namespace, name=model.name)
    event = make_event(involved, reason, message + where, warning=warning)
    with contextlib.suppress(ClusterError, AgentError):
        cluster.request("POST", f"/api/v1/namespaces/{model.namespace}/events", body=event, retries=0)

