"""Integration fixtures: one real local control plane per test session (devenv.cluster),
and one real Git forge (Gitea, `gitea`) for the tests that need a Git server over HTTPS.

The binaries come from tools/k8s/build.sh; if they are not cached yet the fixture builds
them (minutes, once) rather than skipping, so a missing cluster can never pass silently.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, config

from devenv import cluster as dc
from devenv.cluster import ClusterInfo, ForgeInfo, MlflowInfo, PrometheusInfo
from tests.integration._fleet import FleetClusters, fleet_session

if TYPE_CHECKING:
    from agent.controller import Controller, RunConfig

Waiter = Callable[..., Any]


@pytest.fixture(scope="session", name="devcluster")
def _devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """The session's cluster: up in a temporary directory, down (no process left) at the end."""
    dc.binaries()  # builds the control plane if the cache is cold
    directory = tmp_path_factory.mktemp("devcluster")
    info = dc.up(directory)
    try:
        yield info
    finally:
        dc.down(directory)


@pytest.fixture(scope="session")
def fleet_clusters(devcluster: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetClusters]:
    """Three clusters for the environments' tests: staging (the session's `devcluster`) and a
    two-cluster production, prod-1 and prod-2 (started in parallel), one kubeconfig with a
    context each; `.api(name)`, `.paused(name)`, `.stopped(name)`: tests/integration/_fleet.py.
    Production is down (no process left) at the end."""
    with fleet_session(tmp_path_factory.mktemp("fleet"), devcluster) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def gitea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeInfo]:
    """The session's Git forge (a real Gitea over HTTPS with its own CA): up in a temporary
    directory, built first if the cache is cold, down (no process left) at the end."""
    dc.forge_binaries()
    directory = tmp_path_factory.mktemp("gitea")
    info = dc.forge_up(directory)
    try:
        yield info
    finally:
        dc.forge_down(directory)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusInfo]:
    """The session's Prometheus (Debian's package, 1 s scrape and evaluation intervals): up
    with no targets in a temporary directory, down (no process left) at the end. A test
    sets its own targets and rule files with dc.prometheus_reload."""
    directory = tmp_path_factory.mktemp("prometheus")
    info = dc.prometheus_up(directory)
    try:
        yield info
    finally:
        dc.prometheus_down(directory)


@pytest.fixture(scope="session")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowInfo]:
    """The session's MLflow tracking server with its Model Registry (tools/mlflow: its own venv,
    installed first if the cache is cold): up in a temporary directory, down (no process left)
    at the end."""
    dc.mlflow_binaries()
    directory = tmp_path_factory.mktemp("mlflow")
    info = dc.mlflow_up(directory)
    try:
        yield info
    finally:
        dc.mlflow_down(directory)


@pytest.fixture(scope="session")
def kubeconfig(devcluster: ClusterInfo) -> Path:
    return devcluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """Admin client (O=system:masters) of the session cluster."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods need it to be admitted)."""
    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_until(lambda: core.read_namespaced_service_account("default", name), "default SA")
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def wait_for() -> Waiter:
    """wait_for(check, what, timeout=60): poll until check() is truthy (API errors retried)."""
    return wait_until


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll check() until it returns something truthy without raising; return that."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except client.ApiException as err:
            last = err
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def audit_records(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The records of the audit log at `path` (of `event` only, if given), read as the agent
    reads its log while a controller appends to it: a torn last line is not read yet."""
    from agent.audit import read_records

    if not path.exists():
        return []
    return [r for r in read_records(path) if event is None or r.get("event") == event]


@contextmanager
def running(config: RunConfig) -> Iterator[Controller]:
    """The controller of `config` run in a thread until the block ends (then stopped and joined)."""
    from agent.controller import Controller

    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        yield controller
    finally:
        controller.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
