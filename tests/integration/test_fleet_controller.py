"""The fleet controller on three local clusters (`fleet_clusters`: staging, prod-1, prod-2) and the
session's Gitea: one `agent run` (an in-process Fleet) syncs a staging and a two-cluster
production from one repo; with prod-1's apiserver stopped, the next commit reaches staging and
prod-2 (measured, printed) and prod-1 catches up once back; a context added to the kubeconfig
is driven without a restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client

from agent.cluster import Timeouts
from agent.controller import Fleet, RunConfig
from agent.source import Credentials
from devenv.cluster import ForgeInfo, forge_create_repo
from tests.integration._forge_repos import branches, git
from tests.integration.conftest import audit_records, wait_until

if TYPE_CHECKING:
    from tests.integration._fleet import FleetClusters

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"
CLUSTERS = ("staging", "prod-1", "prod-2")


def write_docs(root: Path, docs: dict[str, list[dict[str, Any]]]) -> None:
    for rel, content in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))


def base_docs(target: str, namespace: str, model: dict[str, Any], production: dict[str, Any] | None = None,
              soak: str = "0s", extra: list[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """A repo (target `target`) with one model in `namespace`, a staging on cluster staging and a
    production on prod-1 then prod-2 (`production`: its models' overlays)."""
    return {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": target},
                       "spec": {"policy": {"allowedNamespaces": [namespace]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/model.yaml": [{"apiVersion": API, "kind": "Model", "metadata": {"name": model["name"],
                                                                                 "namespace": namespace},
                               "spec": model["spec"]}, *(extra or [])],
        "environments/staging.yaml": [{"apiVersion": API, "kind": "Environment", "metadata": {"name": "staging"},
                                       "spec": {"clusters": ["staging"]}}],
        "environments/production.yaml": [{"apiVersion": API, "kind": "Environment",
                                          "metadata": {"name": "production"},
                                          "spec": {"clusters": ["prod-1", "prod-2"], "promotesFrom": "staging",
                                                   "soak": soak, "models": production or {}}}],
    }


def web_model(wave: str) -> dict[str, Any]:
    return {"name": "web", "spec": {"format": "sklearn", "runtime": "sklearn-server", "backend": "kubernetes",
                                    "versions": [{"version": "1", "uri": "s3://models/web/1/"}], "stable": "1",
                                    "replicas": 1, "env": {"WAVE": wave}}}


def push_repo(root: Path, gitea: ForgeInfo, name: str, docs: dict[str, list[dict[str, Any]]]) -> Path:
    work = root / "work"
    work.mkdir(parents=True)
    write_docs(work, docs)
    url = forge_create_repo(gitea, name)
    git(work, gitea, "init", "-q", "-b", "main")
    git(work, gitea, "config", "user.name", "fleet-test")
    git(work, gitea, "config", "user.email", "fleet@test.invalid")
    git(work, gitea, "add", "-A")
    git(work, gitea, "commit", "-qm", "first")
    git(work, gitea, "remote", "add", "origin", url)
    git(work, gitea, "push", "-q", "origin", "main")
    wait_until(lambda: "main" in branches(gitea, name), f"{name}: main on the forge", 20)
    return work


def commit(work: Path, gitea: ForgeInfo, docs: dict[str, list[dict[str, Any]]], message: str,
           branch: str = "main") -> str:
    write_docs(work, docs)
    git(work, gitea, "commit", "-qam", message)
    git(work, gitea, "push", "-q", "origin", branch)
    return git(work, gitea, "rev-parse", "HEAD").strip()


def fleet_config(tmp_path: Path, gitea: ForgeInfo, name: str, kubeconfig: Path, **more: Any) -> RunConfig:
    url = f"{gitea.url.rstrip('/')}/{gitea.admin_user}/{name}.git"
    more.setdefault("http_addr", None)
    return RunConfig(repo=url, interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                     cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl",
                     credentials=Credentials(token_file=gitea.token_file, username=gitea.admin_user,
                                             ca_file=gitea.ca_file),
                     timeouts=Timeouts(connect=2.0, read=5.0, budget=4.0), **more)


@contextmanager
def fleet_running(config: RunConfig, **kwargs: Any) -> Iterator[Fleet]:
    fleet = Fleet(config, **kwargs)
    thread = threading.Thread(target=fleet.run, daemon=True)
    thread.start()
    try:
        yield fleet
    finally:
        fleet.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the fleet did not stop"


def deployment_env(clusters: FleetClusters, cluster: str, namespace: str, name: str = "web") -> str | None:
    """The WAVE variable of the model's Deployment in `cluster` (None: no Deployment yet)."""
    try:
        dep = client.AppsV1Api(clusters.api(cluster)).read_namespaced_deployment(name, namespace, _request_timeout=5)
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    for container in dep.spec.template.spec.containers:
        for var in container.env or []:
            if var.name == "WAVE":
                return str(var.value)
    return None


def arrival(check: Callable[[str], bool], names: tuple[str, ...], since: float, timeout: float) -> dict[str, float]:
    """Seconds from `since` until check(name) held, per name (polled together)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(names) and time.monotonic() < deadline:
        for name in names:
            if name not in seen:
                try:
                    ok = check(name)
                except Exception:  # a cluster being brought back: polled again
                    ok = False
                if ok:
                    seen[name] = time.monotonic() - since
        time.sleep(0.2)
    assert len(seen) == len(names), f"only {sorted(seen)} of {names} within {timeout:.0f} s"
    return seen


def test_one_agent_run_syncs_every_cluster_and_a_stopped_one_delays_no_other(
        tmp_path: Path, gitea: ForgeInfo, fleet_clusters: FleetClusters) -> None:
    ns = f"fl-{uuid.uuid4().hex[:6]}"
    name = f"fleet-{ns}"
    work = push_repo(tmp_path / "repo", gitea, name, base_docs(name, ns, web_model("0")))
    config = fleet_config(tmp_path, gitea, name, fleet_clusters.kubeconfig)
    with fleet_running(config) as fleet:
        began = time.monotonic()
        first = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "0", CLUSTERS, began, 120)
        print(f"\nfirst sync (s): {first}")
        wait_until(lambda: fleet._ready()[0], "the fleet ready", 30)
        pushed = time.monotonic()
        commit(work, gitea, base_docs(name, ns, web_model("1")), "wave 1")
        normal = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "1", CLUSTERS, pushed, 60)
        print(f"push -> applied, every cluster up (s): {normal}")
        with fleet_clusters.stopped("prod-1"):
            pushed = time.monotonic()
            commit(work, gitea, base_docs(name, ns, web_model("2")), "wave 2")
            degraded = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "2", ("staging", "prod-2"),
                               pushed, 60)
            print(f"push -> applied, prod-1's apiserver stopped (s): {degraded}")
            member = fleet.member("production", "prod-1")
            assert member is not None and member.unreachable
            exposition = fleet.metrics.exposition().decode()
            assert 'modelops_agent_cluster_unreachable{cluster="prod-1",environment="production"} 1.0' in exposition
            ready, reason = fleet._ready()
            assert ready and "prod-1 (production) unreachable" in reason
            # staging is not in production's wave: prod-1 being down costs it nothing
            assert degraded["staging"] <= normal["staging"] + 5
            # prod-2 waits at most for prod-1's one failed write (bounded by its timeouts), never for prod-1
            assert degraded["prod-2"] <= normal["prod-2"] + 15
            stopped_at = time.monotonic()
        back = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "2", ("prod-1",), stopped_at, 90)
        print(f"prod-1 back -> applied (s): {back}")
        exposition = fleet.metrics.exposition().decode()
        for cluster, env in (("staging", "staging"), ("prod-1", "production"), ("prod-2", "production")):
            assert f'cluster="{cluster}",environment="{env}"' in exposition
    records = audit_records(tmp_path / "audit.jsonl")
    clusters_audited = {(r.get("cluster"), r.get("environment")) for r in records if r.get("cluster")}
    assert {("staging", "staging"), ("prod-1", "production"), ("prod-2", "production")} <= clusters_audited


def test_a_context_added_to_the_kubeconfig_is_driven_without_a_restart(
        tmp_path: Path, gitea: ForgeInfo, fleet_clusters: FleetClusters) -> None:
    ns = f"fl-{uuid.uuid4().hex[:6]}"
    name = f"fleet-{ns}"
    push_repo(tmp_path / "repo", gitea, name, base_docs(name, ns, web_model("0")))
    full = yaml.safe_load(fleet_clusters.kubeconfig.read_text())
    partial = {**full, "contexts": [c for c in full["contexts"] if c["name"] != "prod-2"]}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(partial))
    kubeconfig.chmod(0o600)
    with fleet_running(fleet_config(tmp_path, gitea, name, kubeconfig)) as fleet:
        arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "0", ("staging", "prod-1"), time.monotonic(), 120)
        _ready, reason = fleet._ready()
        assert "cluster prod-2 (production) is in no context of the kubeconfig" in reason
        assert fleet.member("production", "prod-2") is None and deployment_env(fleet_clusters, "prod-2", ns) is None
        added = time.monotonic()
        kubeconfig.write_text(yaml.safe_dump(full))
        seen = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "0", ("prod-2",), added, 60)
        print(f"\ncontext added -> applied (s): {seen}")
        assert fleet.member("production", "prod-2") is not None


def test_in_cluster_the_clusters_are_labelled_secrets_of_the_agents_namespace(
        tmp_path: Path, fleet_clusters: FleetClusters) -> None:
    import base64

    from agent.cluster import Cluster
    from agent.controller._clusters import SecretClusters

    full = yaml.safe_load(fleet_clusters.kubeconfig.read_text())
    only_prod_2 = {**full, "contexts": [c for c in full["contexts"] if c["name"] == "prod-2"],
                   "current-context": "prod-2"}
    core = client.CoreV1Api(fleet_clusters.api("staging"))
    ns = f"fl-secrets-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        encoded = base64.b64encode(yaml.safe_dump(only_prod_2).encode()).decode()
        core.create_namespaced_secret(ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name="prod-2-credentials", labels={"modelops.dev/cluster": "true"},
                                         annotations={"modelops.dev/cluster-name": "prod-2"}),
            data={"kubeconfig": encoded}))
        core.create_namespaced_secret(ns, client.V1Secret(  # not labelled: not a cluster
            metadata=client.V1ObjectMeta(name="other"), data={"kubeconfig": encoded}))
        with Cluster.connect(str(fleet_clusters.kubeconfig), "staging") as home:
            found = SecretClusters(home, ns, tmp_path / "clusters").current()
        assert list(found) == ["prod-2"]
        with Cluster.connect(found["prod-2"].kubeconfig, found["prod-2"].context) as prod_2, \
                Cluster.connect(str(fleet_clusters.kubeconfig), "prod-2") as direct:
            assert prod_2.host == direct.host and prod_2.request("GET", "/version")["major"]
    finally:
        core.delete_namespace(ns)


def test_a_hung_apiserver_holds_only_its_own_member(
        tmp_path: Path, gitea: ForgeInfo, fleet_clusters: FleetClusters) -> None:
    ns = f"fl-{uuid.uuid4().hex[:6]}"
    name = f"fleet-{ns}"
    work = push_repo(tmp_path / "repo", gitea, name, base_docs(name, ns, web_model("0")))
    with fleet_running(fleet_config(tmp_path, gitea, name, fleet_clusters.kubeconfig)) as fleet:
        arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "0", CLUSTERS, time.monotonic(), 120)
        with fleet_clusters.paused("prod-1"):
            pushed = time.monotonic()
            commit(work, gitea, base_docs(name, ns, web_model("1")), "wave 1")
            hung = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "1", ("staging", "prod-2"), pushed, 60)
            print(f"\npush -> applied, prod-1's apiserver hung (s): {hung}")
            assert hung["staging"] < 5  # not in production's wave: nothing to wait for
            # prod-2 waits until prod-1's member gives up on its writes (read timeout 5 s, budget 4 s)
            assert hung["prod-2"] < 30
            member = fleet.member("production", "prod-1")
            assert member is not None and member.unreachable
            resumed = time.monotonic()
        back = arrival(lambda c: deployment_env(fleet_clusters, c, ns) == "1", ("prod-1",), resumed, 90)
        print(f"prod-1 resumed -> applied (s): {back}")
