"""Notifications from a fleet (one `agent run` over three local clusters and the session's
Gitea): one notifier shared by the members; each cluster sets its own commit status on the
commit (`modelops/<target>/<cluster>`, the target of an environment being `<repo>-<env>`), and a
CloudEvents receiver learns which environment and cluster each event is about."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from devenv.cluster import ForgeInfo
from tests._receiver import Receiver
from tests.integration._forge_repos import api_get, git
from tests.integration.conftest import wait_until
from tests.integration.test_fleet_controller import base_docs, fleet_config, fleet_running, push_repo, web_model

if TYPE_CHECKING:
    from tests.integration._fleet import FleetClusters

pytestmark = pytest.mark.integration

MEMBERS = (("staging", "staging"), ("production", "prod-1"), ("production", "prod-2"))


@pytest.fixture
def bus() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def latest(gitea: ForgeInfo, name: str, sha: str) -> dict[str, str]:
    """The newest status of each context on `sha`."""
    found = sorted(api_get(gitea, f"/repos/{gitea.admin_user}/{name}/statuses/{sha}?limit=50") or [],
                   key=lambda s: int(s["id"]))
    return {s["context"]: s["status"] for s in found}


def test_each_cluster_of_a_fleet_sets_its_own_commit_status(
        tmp_path: Path, gitea: ForgeInfo, fleet_clusters: FleetClusters, bus: Receiver) -> None:
    ns = f"nf-{uuid.uuid4().hex[:6]}"
    name = f"notify-{ns}"
    work = push_repo(tmp_path / "repo", gitea, name, base_docs(name, ns, web_model("0")))
    sha = git(work, gitea, "rev-parse", "HEAD").strip()
    notify = tmp_path / "notify.yaml"
    notify.write_text(yaml.safe_dump({"targets": [
        {"name": "commits", "type": "commitStatus", "forge": "gitea", "apiUrl": gitea.api_url,
         "caFile": str(gitea.ca_file), "token": {"fromFile": str(gitea.token_file)}},
        {"name": "bus", "type": "cloudevents", "url": bus.url, "events": ["commit-applied"]}]}))
    config = fleet_config(tmp_path, gitea, name, fleet_clusters.kubeconfig, notify=str(notify),
                          ui_url="https://agent.example/")
    contexts = {f"modelops/{name}-{env}/{cluster}" for env, cluster in MEMBERS}
    with fleet_running(config) as fleet:
        wait_until(lambda: latest(gitea, name, sha) == dict.fromkeys(contexts, "success"),
                   "success from each cluster on the commit", 120)
        wait_until(lambda: len(bus.received) >= 3, "an applied event per cluster", 30)
        exposition = fleet.metrics.exposition().decode()
    assert 'modelops_agent_notifications_total{result="sent",target="commits",type="commitStatus"}' in exposition
    applied: list[dict[str, Any]] = [b["data"] for b in bus.bodies()]
    assert {(d["environment"], d["cluster"], d["target"]) for d in applied} == {
        (env, cluster, f"{name}-{env}") for env, cluster in MEMBERS}
    assert all(d["commit"] == sha for d in applied)
