"""Commit statuses on the real Gitea (issue #20, part 3): a real controller on the local control
plane follows a Gitea repository with `--notify` naming a commitStatus target (the repository
defaulting to the followed one). The first commit's status `modelops/<target>` goes pending when
it is picked up, then success once applied; a second commit brings a canary whose rollout is
rolled back (its error rate high in Debian's Prometheus) and ends `failure`, with a one-line
description and a link to the UI. After a restart the rolled-back commit's failure stands, and a
third commit that does not validate gets `failure` alone."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.controller import RunConfig
from agent.source import Credentials
from devenv.cluster import ForgeInfo, PrometheusInfo, prometheus_reload
from tests.integration._forge_repos import api_get
from tests.integration._model_server import ModelServer
from tests.integration._repos import GIT
from tests.integration.conftest import audit_records, running, wait_until
from tests.integration.test_rollout import canary_traffic, hosted, rollout_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def served(prometheus: PrometheusInfo) -> Iterator[Callable[[str], ModelServer]]:
    servers: list[ModelServer] = []

    def start(namespace: str) -> ModelServer:
        server = ModelServer(namespace, "scorer")
        server.track("1", "stable", error_rate=0.0, rps=20.0)
        server.track("2", "canary", error_rate=0.5, rps=20.0)  # the canary fails its analysis
        servers.append(server)
        prometheus_reload(prometheus, [s.target for s in servers])
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def statuses(gitea: ForgeInfo, name: str, sha: str) -> list[dict[str, Any]]:
    """Every status set on `sha`, oldest first."""
    found = api_get(gitea, f"/repos/{gitea.admin_user}/{name}/statuses/{sha}?limit=50") or []
    return sorted(found, key=lambda s: int(s["id"]))


def commit_all(work: Path, message: str) -> str:
    subprocess.run([*GIT, "commit", "-qam", message], cwd=work, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_commit_statuses_pending_success_then_failure_on_a_rolled_back_commit(
        tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo, gitea: ForgeInfo,
        served: Callable[[str], ModelServer]) -> None:
    ns = "notify-status"
    work, _bare = rollout_repo(tmp_path / "repo", ns, steps=[50, 100], interval="3s", on_success="none")
    model_file = work / "models" / "scorer.yaml"
    with_canary = model_file.read_text()
    docs = list(yaml.safe_load_all(with_canary))
    del docs[0]["spec"]["canary"]  # the first commit: version 1 alone
    model_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    first = commit_all(work, "scorer 1 alone")
    url = hosted(work, gitea, ns)
    served(ns)
    notify = tmp_path / "notify.yaml"
    notify.write_text(yaml.safe_dump({"uiUrl": "https://agent.example/", "targets": [
        {"name": "commits", "type": "commitStatus", "forge": "gitea", "apiUrl": gitea.api_url,
         "caFile": str(gitea.ca_file), "token": {"fromFile": str(gitea.token_file)}}]}))
    config = RunConfig(repo=url, interval=1.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                       cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl",
                       prometheus_url=prometheus.url, notify=str(notify),
                       credentials=Credentials(token_file=gitea.token_file, username=gitea.admin_user,
                                               ca_file=gitea.ca_file))
    context = f"modelops/{ns}"
    with running(config):
        wait_until(lambda: [s["status"] for s in statuses(gitea, ns, first)] == ["pending", "success"],
                   "the first commit pending, then success", 90)
        set_first = statuses(gitea, ns, first)
        assert all(s["context"] == context for s in set_first)
        assert set_first[0]["description"] == f"commit {first[:12]}: applying to {ns}"
        assert set_first[1]["description"] == f"commit {first[:12]} applied to {ns}"
        assert set_first[1]["target_url"] == "https://agent.example/"
        # the canary's commit: applied, then rolled back by its analysis
        model_file.write_text(with_canary)
        second = commit_all(work, "scorer 2 as a canary <img src=x onerror=alert(1)>")
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, env=gitea.git_env(), check=True,
                       capture_output=True, timeout=60)
        wait_until(lambda: statuses(gitea, ns, second) and statuses(gitea, ns, second)[-1]["status"] == "failure",
                   "the rolled-back commit's status: failure", 90)
        assert canary_traffic(kubeconfig, ns) == 0
    set_second = statuses(gitea, ns, second)
    assert [s["status"] for s in set_second] == ["pending", "success", "failure"]
    # a restart picks the second commit up again: its settled status is not said again
    with running(config) as again:
        wait_until(lambda: f'last_synced_commit_info{{commit="{second}"}} 1.0' in again.metrics.exposition().decode(),
                   "the restarted agent applying the second commit", 60)
        # a commit that does not validate: nothing applied, failure on it
        (work / "models" / "broken.yaml").write_text("apiVersion: modelops.dev/v1alpha1\nkind: Model\n")
        subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
        third = commit_all(work, "a model without a name")
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, env=gitea.git_env(), check=True,
                       capture_output=True, timeout=60)
        # one worker sends in order: the third's failure comes after whatever the restart said of the second
        wait_until(lambda: [s["status"] for s in statuses(gitea, ns, third)] == ["failure"],
                   "the invalid commit's status: failure", 60)
        invalid = statuses(gitea, ns, third)[0]
        assert invalid["description"].startswith(f"commit {third[:12]} is invalid, nothing applied: ")
    assert statuses(gitea, ns, second) == set_second
    failure = set_second[-1]
    assert failure["context"] == context
    assert failure["description"].startswith(f"{ns}/scorer 2: rollout rolled back")
    assert len(failure["description"]) <= 140 and "\n" not in failure["description"]
    assert failure["target_url"] == f"https://agent.example/models/{ns}/scorer?target={ns}"
    rolled = [r for r in audit_records(tmp_path / "audit.jsonl", "rollout") if r["transition"] == "rolled-back"]
    assert rolled and rolled[0]["commit"] == second  # the status is on the commit the audit log names
    assert [s["status"] for s in statuses(gitea, ns, first)] == ["pending", "success"]  # the first one untouched
