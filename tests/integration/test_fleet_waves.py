"""Waves across a production fleet on three local clusters, Gitea and the session's Prometheus: a production
change with a rollout (KServe on kwok, analysis of a model server's series as in
test_rollout.py, onSuccess: none) reaches prod-1 first and prod-2 only after prod-1's rollout
succeeded; a failing one is rolled back in prod-1 and never reaches prod-2, and the stop is
reported (audit record, metric, Warning Event in prod-1)."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from devenv.cluster import ForgeInfo, PrometheusInfo, prometheus_reload
from tests.integration._forge_repos import api_get, git
from tests.integration._model_server import ModelServer
from tests.integration._passes import wait_passes
from tests.integration.conftest import audit_records, wait_until
from tests.integration.test_fleet_controller import API, base_docs, commit, fleet_config, fleet_running, push_repo

if TYPE_CHECKING:
    from tests.integration._fleet import FleetClusters

pytestmark = pytest.mark.integration


def scorer() -> dict[str, Any]:
    return {"name": "scorer", "spec": {
        "format": "sklearn", "runtime": "sklearn-server", "backend": "kserve", "replicas": 1, "stable": "1",
        "versions": [{"version": v, "uri": f"s3://models/scorer/{v}/"} for v in ("1", "2", "3")]}}


def monitor(namespace: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer", "namespace": namespace},
            "spec": {"model": "scorer", "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                    "action": "rollback"}]}}


def canary(version: str) -> dict[str, Any]:
    return {"scorer": {"canary": {"version": version},
                       "rollout": {"strategy": "canary", "steps": [50, 100], "interval": "3s",
                                   "analysis": {"rules": ["error-rate"], "minRequests": 5},
                                   "maxFailedChecks": 1, "onSuccess": "none"}}}


def serving(clusters: FleetClusters, cluster: str, namespace: str) -> tuple[str, Any] | None:
    """(storageUri, canaryTrafficPercent) of the scorer's InferenceService in `cluster`."""
    try:
        obj = client.CustomObjectsApi(clusters.api(cluster)).get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", "scorer", _request_timeout=5)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    predictor = obj["spec"]["predictor"]
    return predictor["model"]["storageUri"], predictor.get("canaryTrafficPercent")


@pytest.fixture
def server(prometheus: PrometheusInfo) -> Iterator[ModelServer]:
    ns = f"fw-{uuid.uuid4().hex[:6]}"
    with ModelServer(ns, "scorer") as model_server:
        model_server.track("1", "stable").track("2", "canary").track("3", "canary", error_rate=0.5)
        prometheus_reload(prometheus, [model_server.target])
        yield model_server


def test_a_rollout_reaches_prod_2_only_after_it_succeeded_in_prod_1_and_a_failed_one_never(
        tmp_path: Path, gitea: ForgeInfo, prometheus: PrometheusInfo, fleet_clusters: FleetClusters,
        server: ModelServer) -> None:
    ns = server.namespace
    name = f"waves-{ns}"
    key = f"{ns}/scorer"
    extra = [monitor(ns)]
    work = push_repo(tmp_path / "repo", gitea, name, base_docs(name, ns, scorer(), extra=extra))
    config = fleet_config(tmp_path, gitea, name, fleet_clusters.kubeconfig, prometheus_url=prometheus.url,
                          forge="gitea", forge_api_url=gitea.api_url)
    with fleet_running(config) as fleet:
        for cluster in ("staging", "prod-1", "prod-2"):
            wait_until(lambda c=cluster: (serving(fleet_clusters, c, ns) or ("",))[0] == "s3://models/scorer/1/",
                       f"scorer 1 in {cluster}", 120)
        prod1, prod2 = fleet.member("production", "prod-1"), fleet.member("production", "prod-2")
        assert prod1 is not None and prod2 is not None
        commit(work, gitea, base_docs(name, ns, scorer(), production=canary("2"), extra=extra), "production: canary 2")
        # prod-1 mid-rollout (its first step at 50 %): prod-2 has not been handed the change
        wait_until(lambda: serving(fleet_clusters, "prod-1", ns) == ("s3://models/scorer/2/", 50),
                   "prod-1 at the first step", 90)
        assert prod1.progress.phases.get(key) != "Succeeded"
        assert serving(fleet_clusters, "prod-2", ns) == ("s3://models/scorer/1/", None)
        wait_until(lambda: (serving(fleet_clusters, "prod-2", ns) or ("",))[0] == "s3://models/scorer/2/",
                   "prod-2 handed canary 2", 120)
        assert prod1.progress.phases.get(key) == "Succeeded"  # the wave moved on only then
        wait_until(lambda: prod2.progress.phases.get(key) == "Succeeded", "prod-2's rollout succeeded", 90)
        staging = serving(fleet_clusters, "staging", ns)
        assert staging == ("s3://models/scorer/1/", None)  # production's overlay is production's only

        # the failing change comes from a merged pull request: the stop is told there too
        git(work, gitea, "checkout", "-q", "-b", "canary-3")
        commit(work, gitea, base_docs(name, ns, scorer(), production=canary("3"), extra=extra), "production: canary 3",
               branch="canary-3")
        number = merge_pull(gitea, name, "canary-3")
        wait_until(lambda: fleet.stops, "the wave stopped by prod-1's failed rollout", 120)
        environment, stop = fleet.stops[0]
        assert (environment, stop.cluster, stop.model, stop.reason) == ("production", "prod-1", key, "RolledBack")
        assert prod2.controller is not None
        wait_passes(prod2.controller, 2, "prod-2 after the stop")
        assert (serving(fleet_clusters, "prod-2", ns) or ("",))[0] == "s3://models/scorer/2/"  # never 3
        exposition = fleet.metrics.exposition().decode()
        assert 'modelops_agent_wave_stopped_total{environment="production"} 1.0' in exposition
        records = audit_records(tmp_path / "audit.jsonl", "wave-stopped")
        assert len(records) == 1 and records[0]["cluster"] == "prod-1" and records[0]["model"] == key

        def event() -> bool:
            events = client.CoreV1Api(fleet_clusters.api("prod-1")).list_namespaced_event(ns, _request_timeout=5)
            named = "(cluster prod-1, environment production)"
            return (any(e.reason == "WaveStopped" and e.type == "Warning" and named in e.message for e in events.items)
                    and any(e.reason == "RolloutRolledBack" and named in e.message for e in events.items))
        wait_until(event, "the WaveStopped Event in prod-1", 30)
        comments = wait_until(lambda: [c for c in api_get(gitea, f"/repos/{gitea.admin_user}/{name}/issues/{number}"
                                                                 "/comments") if "wave stopped" in c["body"]],
                              "the comment on the pull request", 30)
        assert len(comments) == 1 and "prod-1" in comments[0]["body"] and "prod-2" in comments[0]["body"]


def merge_pull(gitea: ForgeInfo, name: str, head: str) -> int:
    """Open a pull request of `head` into main and merge it (Gitea writes "(#N)" in the merge commit)."""
    repo = f"/repos/{gitea.admin_user}/{name}"
    pull = api_call(gitea, "POST", f"{repo}/pulls", {"head": head, "base": "main", "title": f"{head} to production"})
    number = int(pull["number"])
    wait_until(lambda: api_get(gitea, f"{repo}/pulls/{number}").get("mergeable"), "the pull request mergeable", 30)
    api_call(gitea, "POST", f"{repo}/pulls/{number}/merge", {"Do": "merge"})
    return number


def api_call(gitea: ForgeInfo, method: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(gitea.api_url.rstrip("/") + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": f"token {gitea.token}",
                                              "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(gitea.ca_file))
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        data = response.read()
    return json.loads(data) if data.strip() else None
