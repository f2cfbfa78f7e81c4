"""The fleet's parts that need no cluster: its clusters from a kubeconfig (read again when it
changes) or from labelled Secrets, a member's FeedSource, and the fleet's /metrics labels."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from agent.controller._clusters import KubeconfigClusters, SecretClusters, contexts_of
from agent.controller._feed import FeedSource
from agent.controller._fleet_metrics import FleetMetrics
from agent.controller._metrics import Metrics
from agent.desired import load_desired
from agent.errors import AgentError
from tests.unit.conftest import REPO_ROOT


def kubeconfig(*names: str, server: str = "https://127.0.0.1:6443") -> str:
    clusters = "".join(f"  - name: {n}\n    cluster: {{server: '{server}'}}\n" for n in names)
    users = "".join(f"  - name: {n}\n    user: {{token: secret-{n}}}\n" for n in names)
    contexts = "".join(f"  - name: {n}\n    context: {{cluster: {n}, user: {n}}}\n" for n in names)
    return f"apiVersion: v1\nkind: Config\nclusters:\n{clusters}users:\n{users}contexts:\n{contexts}"


def test_contexts_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig("staging", "prod-1"))
    clusters = KubeconfigClusters(str(path))
    first = clusters.current()
    assert sorted(first) == ["prod-1", "staging"] and first["staging"].context == "staging"
    path.write_text(kubeconfig("staging", "prod-1", "prod-2"))
    os.utime(path, ns=(1, 10**18))  # a new mtime whatever the file system's resolution
    second = clusters.current()
    assert sorted(second) == ["prod-1", "prod-2", "staging"]
    assert second["staging"] == first["staging"]  # another context added: this one's member keeps running


def test_a_context_whose_credentials_change_gets_a_new_version() -> None:
    before = contexts_of(kubeconfig("a", "b"), "k")
    after = contexts_of(kubeconfig("a", "b", server="https://10.0.0.1:6443"), "k")
    assert before["a"] != after["a"]


def test_a_broken_kubeconfig_keeps_the_clusters_known_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(kubeconfig("staging"))
    clusters = KubeconfigClusters(str(path))
    assert list(clusters.current()) == ["staging"]
    path.write_text("contexts:\n  - context: {}\n")
    os.utime(path, ns=(1, 10**18))
    assert list(clusters.current()) == ["staging"]
    assert clusters.error == f"kubeconfig {path}: contexts[0].name: expected a non-empty string"


@pytest.mark.parametrize(("text", "message"), [
    ("[a", "k: not YAML"), ("- a\n", "k: not a kubeconfig (expected a mapping)"),
    ("contexts: 3\n", "k: contexts: expected a list")])
def test_what_is_not_a_kubeconfig_is_named(text: str, message: str) -> None:
    with pytest.raises(AgentError, match=re.escape(message)):
        contexts_of(text, "k")


def secret(name: str, data: dict[str, str], annotation: str | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "resourceVersion": "7"}
    if annotation:
        meta["annotations"] = {"modelops.dev/cluster-name": annotation}
    return {"metadata": meta, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_a_cluster_secret_holds_a_kubeconfig_written_private(tmp_path: Path) -> None:
    secrets = SecretClusters(None, "modelops-system", tmp_path / "clusters")  # type: ignore[arg-type]
    name, conn = secrets._one(secret("prod-1-credentials", {"kubeconfig": kubeconfig("x")}, annotation="prod-1"))
    assert name == "prod-1" and conn.context is None
    assert Path(conn.kubeconfig).read_text() == kubeconfig("x")
    assert Path(conn.kubeconfig).stat().st_mode & 0o777 == 0o600
    name, _ = secrets._one(secret("prod-2", {"value": kubeconfig("y")}))  # Flux's key
    assert name == "prod-2"
    with pytest.raises(AgentError, match=re.escape("Secret modelops-system/bad: data.kubeconfig (or data.value) is missing")):
        secrets._one(secret("bad", {"other": "x"}))


def test_a_member_takes_the_newest_offer_at_its_next_fetch() -> None:
    desired = load_desired(REPO_ROOT / "examples" / "environments", environment="staging", resolve=False)
    newer = load_desired(REPO_ROOT / "examples" / "environments", environment="production", resolve=False)
    feed = FeedSource()
    feed.offer(desired, "c1", "t1")
    feed.offer(newer, "c2", "t2")
    assert feed.desired is None  # nothing swapped until the member's loop fetches
    assert feed.fetch() is None
    assert (feed.desired, feed.commit, feed.token, feed.fetched) == (newer, "c2", "t2", "c2")
    feed.fetch()
    assert feed.desired is newer and not feed.registry_tick(may_propose=True)


class _Member:
    def __init__(self, cluster: str, environment: str, unreachable: str = "") -> None:
        self.labels = {"cluster": cluster, "environment": environment}
        self.unreachable = unreachable
        self.metrics: Metrics | None = Metrics()


def test_fleet_metrics_label_each_member_and_count_the_unreachable() -> None:
    members = [_Member("prod-1", "production", unreachable="connection refused"), _Member("staging", "staging")]
    members[1].metrics.synced("abc")  # type: ignore[union-attr]
    fleet = FleetMetrics(lambda: members)
    fleet.wave_stopped("production")
    text = fleet.exposition().decode()
    assert 'modelops_agent_last_synced_commit_info{cluster="staging",commit="abc",environment="staging"} 1.0' in text
    assert 'modelops_agent_passes_total{cluster="prod-1",environment="production",role="leader"} 0.0' in text
    assert 'modelops_agent_passes_total{role="leader"} 0.0' in text  # the fleet's own, unlabelled
    assert 'modelops_agent_cluster_unreachable{cluster="prod-1",environment="production"} 1.0' in text
    assert 'modelops_agent_cluster_unreachable{cluster="staging",environment="staging"} 0.0' in text
    assert 'modelops_agent_fleet_members{state="up"} 1.0' in text
    assert 'modelops_agent_wave_stopped_total{environment="production"} 1.0' in text
    assert text.count("# TYPE modelops_agent_passes_total counter") == 1
    assert 'process_cpu_seconds_total{cluster=' not in text  # one process: its series once, unlabelled


def test_agent_run_drives_a_fleet_only_for_a_repo_with_environments(tmp_path: Path) -> None:
    from agent.controller import RunConfig, declares_environments

    def config(example: str) -> RunConfig:
        where = REPO_ROOT / "examples" / example
        return RunConfig(repo=str(where), watch_dir=where, cache_dir=tmp_path)
    assert declares_environments(config("environments"))
    assert not declares_environments(config("model-repo"))


def test_a_cluster_whose_requests_get_no_answer_is_down_until_one_does() -> None:
    from agent.cluster._client import Breaker

    breaker = Breaker(threshold=3, window=60.0, clock=lambda: 0.0)
    for _ in range(2):
        breaker.failure(0.0, "connection refused")
    assert breaker.down == ""  # a blip is not a cluster down
    breaker.failure(0.0, "connection refused")
    assert breaker.down == "3 requests in a row got no answer (last: connection refused)"
    breaker.success()
    assert breaker.down == ""
