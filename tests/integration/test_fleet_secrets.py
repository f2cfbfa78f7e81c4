"""In a cluster without a kubeconfig the fleet finds its clusters in Secrets labelled
modelops.dev/cluster=true (the Argo CD / Flux convention), read from the real API server of its
home cluster: a Secret holding prod-1's kubeconfig becomes a cluster named after it (or its
annotation), a broken one is reported by name, and a fleet given those clusters syncs prod-1."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from agent.cluster import Cluster
from agent.controller._clusters import SecretClusters
from devenv.cluster import ForgeInfo
from tests.integration._fleet import FleetClusters
from tests.integration.conftest import wait_until
from tests.integration.test_fleet_controller import (
    base_docs,
    deployment_env,
    fleet_config,
    fleet_running,
    push_repo,
    web_model,
)

pytestmark = pytest.mark.integration


def _secret(name: str, data: dict[str, bytes], annotations: dict[str, str] | None = None) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels={"modelops.dev/cluster": "true"}, annotations=annotations),
        data={k: base64.b64encode(v).decode() for k, v in data.items()})


def test_clusters_from_labelled_secrets(tmp_path: Path, gitea: ForgeInfo, fleet_clusters: FleetClusters) -> None:
    home = fleet_clusters.api("staging")
    core = client.CoreV1Api(home)
    ns = f"fs-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        prod1 = fleet_clusters.info["prod-1"].kubeconfig.read_bytes()
        core.create_namespaced_secret(ns, _secret("prod-one", {"kubeconfig": prod1},
                                                  {"modelops.dev/cluster-name": "prod-1"}))
        core.create_namespaced_secret(ns, _secret("broken", {"other": b"x"}))
        with Cluster.connect(str(fleet_clusters.kubeconfig), "staging") as cluster:
            secrets = SecretClusters(cluster, ns, tmp_path / "clusters")
            found = secrets.current()
            assert sorted(found) == ["prod-1"]
            assert f"Secret {ns}/broken: data.kubeconfig (or data.value) is missing" in secrets.error
            path = Path(found["prod-1"].kubeconfig)
            assert path.stat().st_mode & 0o777 == 0o600
            with Cluster.connect(str(path), found["prod-1"].context) as prod:
                assert prod.request("GET", "/version")["gitVersion"]

            # a fleet given these clusters (as in a cluster without a kubeconfig) syncs prod-1
            mns = f"fm-{uuid.uuid4().hex[:6]}"
            name = f"fleet-{mns}"
            docs = base_docs(name, mns, web_model("s"))
            docs["environments/production.yaml"][0]["spec"]["clusters"] = ["prod-1"]
            docs["environments/staging.yaml"][0]["spec"]["clusters"] = ["staging-elsewhere"]
            push_repo(tmp_path / "repo", gitea, name, docs)
            config = fleet_config(tmp_path, gitea, name, fleet_clusters.kubeconfig)
            with fleet_running(config, clusters=secrets) as fleet:
                wait_until(lambda: deployment_env(fleet_clusters, "prod-1", mns) == "s", "prod-1 synced", 120)
                assert fleet.member("production", "prod-1") is not None
                # a Secret deleted: the member stops without a restart of the fleet
                core.delete_namespaced_secret("prod-one", ns)
                deadline = time.monotonic() + 60
                while fleet.member("production", "prod-1") is not None:
                    assert time.monotonic() < deadline, "the member of a deleted cluster Secret never stopped"
                    time.sleep(0.5)
    finally:
        core.delete_namespace(ns)
