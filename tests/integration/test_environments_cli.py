"""The CLI across environments on three real local control planes (the session's
`fleet_clusters`: staging, prod-1, prod-2, one kubeconfig with a context each): `apply --env
production` reaches both production clusters and not staging, `status` shows the model x
environment/cluster matrix, `diff --env` plans each cluster, and a production cluster whose
API server hangs or is down is reported while the others are still done."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from agent import cli
from tests.integration._fleet import FleetClusters
from tests.integration._repos import GIT

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
FAST = ["--connect-timeout", "2", "--request-timeout", "2", "--retry-budget", "3"]  # a hung member answers nothing


def write_repo(repo: Path, name: str) -> None:
    """Target `name`, namespace `name`, one KServe model `scorer` (versions 1 and 2, stable 1);
    staging on cluster staging, production on prod-1 then prod-2 serving version 2 on 2 replicas."""
    model = {"format": "sklearn", "runtime": "sklearn-server", "backend": "kserve", "replicas": 1, "stable": "1",
             "versions": [{"version": "1", "uri": "s3://models/scorer/1/"},
                          {"version": "2", "uri": "s3://models/scorer/2/"}]}
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [name]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [{"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": name},
                                "spec": model}],
        "environments/staging.yaml": [{"apiVersion": API, "kind": "Environment", "metadata": {"name": "staging"},
                                       "spec": {"clusters": ["staging"]}}],
        "environments/production.yaml": [{
            "apiVersion": API, "kind": "Environment", "metadata": {"name": "production"},
            "spec": {"clusters": ["prod-1", "prod-2"], "promotesFrom": "staging", "soak": "1h",
                     "models": {"scorer": {"stable": "2", "replicas": 2}}}}],
    }
    for rel, content in docs.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=30)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True, timeout=30)
    subprocess.run([*GIT, "commit", "-qm", "environments"], cwd=repo, check=True, timeout=30)


@pytest.fixture
def fleet_repo(tmp_path: Path, fleet_clusters: FleetClusters) -> Any:
    """A repo of its own namespace and target (the clusters are shared by the session)."""
    name = f"envs-{uuid.uuid4().hex[:6]}"
    repo = tmp_path / "repo"
    write_repo(repo, name)
    yield repo, name
    for member in fleet_clusters.names:
        try:
            client.CoreV1Api(fleet_clusters.api(member)).delete_namespace(name, _request_timeout=10)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scorer(fleet: FleetClusters, member: str, namespace: str) -> dict[str, Any] | None:
    api = client.CustomObjectsApi(fleet.api(member))
    try:
        found = api.get_namespaced_custom_object(*ISVC[:2], namespace, ISVC[2], "scorer", _request_timeout=10)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert isinstance(found, dict)
    return found


def test_apply_env_production_reaches_its_clusters_in_order_and_not_staging(
        fleet_clusters: FleetClusters, fleet_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo, name = fleet_repo
    kubeconfig = str(fleet_clusters.kubeconfig)
    audit = repo.parent / f"{name}-audit.jsonl"
    code, out, err = run(capsys, "apply", str(repo), "--env", "production", "--kubeconfig", kubeconfig, "-o", "json",
                         "--audit-log", str(audit))
    assert code == 0, err
    doc = json.loads(out)
    assert [(c["cluster"], c["target"], c["ok"]) for c in doc["clusters"]] == [
        ("prod-1", f"{name}-production", True), ("prod-2", f"{name}-production", True)]
    from agent.audit import read_records  # each cluster's records say which (both share the target)

    synced = [(r.get("cluster"), r.get("environment")) for r in read_records(audit) if r.get("event") == "reconcile"]
    assert synced == [("prod-1", "production"), ("prod-2", "production")], synced
    for member in ("prod-1", "prod-2"):  # the positive sign: both production clusters have it
        isvc = scorer(fleet_clusters, member, name)
        assert isvc is not None
        assert isvc["metadata"]["labels"]["modelops.dev/target"] == f"{name}-production"
        assert isvc["metadata"]["annotations"]["modelops.dev/stable-version"] == "2"
    assert scorer(fleet_clusters, "staging", name) is None  # production's apply never wrote to staging

    code, out, _ = run(capsys, "diff", str(repo), "--env", "production", "--kubeconfig", kubeconfig)
    assert code == 0
    assert "== production/prod-1 ==\nno changes\n== production/prod-2 ==\nno changes\n" in out

    code, out, _ = run(capsys, "apply", str(repo), "--cluster", "staging", "--kubeconfig", kubeconfig)
    assert code == 0 and out.startswith(f"== staging/staging (target {name}-staging) ==\n")
    isvc = scorer(fleet_clusters, "staging", name)
    assert isvc is not None and isvc["metadata"]["annotations"]["modelops.dev/stable-version"] == "1"

    code, out, err = run(capsys, "status", str(repo), "--kubeconfig", kubeconfig, "--allow-unknown", "-o", "json")
    assert code == 0, err
    envs = {e["name"]: e for e in json.loads(out)["environments"]}
    assert [e for e in envs] == ["staging", "production"]
    cells = {(e, c["name"]): c for e in envs for c in envs[e]["clusters"]}
    assert list(cells) == [("staging", "staging"), ("production", "prod-1"), ("production", "prod-2")]
    for (env, _), cluster in cells.items():
        assert cluster["reachable"] is True
        [model] = cluster["models"]
        want = "1" if env == "staging" else "2"
        assert (model["name"], model["version"], model["liveVersion"], model["synced"]) == ("scorer", want, want, True)
    code, out, _ = run(capsys, "status", str(repo), "--kubeconfig", kubeconfig)
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["MODEL", "staging/staging", "production/prod-1", "production/prod-2"]
    assert rows[1][:1] == [f"{name}/scorer"] and rows[1][1] == "1" and rows[1][3] == "2"
    assert rows[-1][0] == "commit"


@pytest.mark.parametrize("fault", ["paused", "stopped"])
def test_a_production_cluster_down_is_reported_and_the_next_still_done(
        fleet_clusters: FleetClusters, fleet_repo: Any, capsys: pytest.CaptureFixture[str], fault: str) -> None:
    """prod-1, the first of production's waves, hangs (SIGSTOP) or is down: prod-2 is applied all the same."""
    repo, name = fleet_repo
    kubeconfig = str(fleet_clusters.kubeconfig)
    down = fleet_clusters.paused("prod-1") if fault == "paused" else fleet_clusters.stopped("prod-1")
    with down:
        code, out, err = run(capsys, "apply", str(repo), "--env", "production", "--kubeconfig", kubeconfig, *FAST,
                             "-o", "json")
        assert code == 2
        clusters = {c["cluster"]: c for c in json.loads(out)["clusters"]}
        assert clusters["prod-1"]["ok"] is False and clusters["prod-1"]["error"]
        assert clusters["prod-2"]["ok"] is True and clusters["prod-2"]["error"] is None
        assert scorer(fleet_clusters, "prod-2", name) is not None

        code, out, err = run(capsys, "status", str(repo), "--kubeconfig", kubeconfig, *FAST, "-o", "json")
        assert code == 1
        reachable = {c["name"]: c["reachable"] for e in json.loads(out)["environments"] for c in e["clusters"]}
        assert reachable == {"staging": True, "prod-1": False, "prod-2": True}
        code, out, err = run(capsys, "status", str(repo), "--kubeconfig", kubeconfig, *FAST)
        assert code == 1
        commits = next(line.split() for line in out.splitlines() if line.startswith("commit"))
        assert commits[2] == "unreachable" and commits[3] != "unreachable"
        assert "error: cluster prod-1 (production): " in err and "Traceback" not in err
