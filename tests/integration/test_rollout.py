"""Issue #11 on the local control plane with a real Prometheus (Debian's): the controller runs a
Model's metric-gated canary rollout step by step, rolls an unhealthy canary back within one
interval, writes a success back to Git, and resumes at the same step after a restart.

Prometheus scrapes a small model server (tests/integration/_model_server.py) that plays the
stable and the canary version with error rates the tests change at run time; the agent's
analysis queries Prometheus exactly as it would in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cluster import Cluster, load_rollouts
from agent.controller import Controller, RunConfig
from agent.forge import open_forge, repo_ref
from agent.source import Credentials
from devenv.cluster import ForgeInfo, PrometheusInfo, forge_create_repo, prometheus_reload
from tests.integration._model_server import ModelServer
from tests.integration._passes import wait_pass_after
from tests.integration._repos import GIT, committed
from tests.integration.conftest import audit_records, wait_until

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"


def rollout_repo(root: Path, name: str, *, steps: list[int], interval: str = "3s", min_requests: int = 5,
                 on_success: str = "commit", blue_green: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """A model repo (target `name`, namespace `name`) with one KServe model `scorer`: version 1
    stable, version 2 the canary under a rollout gated by its Monitor's error-rate rule. Returns
    (working clone, bare remote)."""
    work = root / "work"
    work.mkdir(parents=True)
    rollout: dict[str, Any] = {"strategy": "canary", "steps": steps, "interval": interval,
                               "analysis": {"rules": ["error-rate"], "minRequests": min_requests},
                               "maxFailedChecks": 1, "onSuccess": on_success}
    if blue_green is not None:
        del rollout["steps"]
        rollout.update(strategy="blueGreen", **blue_green)
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [name]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [
            {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": name},
             "spec": {"format": "sklearn", "runtime": "sklearn-server", "backend": "kserve",
                      "versions": [{"version": "1", "uri": "s3://models/scorer/1/"},
                                   {"version": "2", "uri": "s3://models/scorer/2/"}],
                      "stable": "1", "canary": {"version": "2"},
                      "rollout": rollout,
                      "replicas": 1}},
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer", "namespace": name},
             "spec": {"model": "scorer", "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                     "action": "rollback"}]}},
        ],
    }
    return work, committed(work, docs, "scorer 2 as a canary")


def remote_model(bare: Path) -> dict[str, Any]:
    text = subprocess.run(["git", "--git-dir", str(bare), "show", "main:models/scorer.yaml"], check=True,
                          capture_output=True, text=True).stdout
    return dict(next(iter(yaml.safe_load_all(text))))


def isvc(kubeconfig: Path, namespace: str) -> dict[str, Any] | None:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", namespace)


def canary_traffic(kubeconfig: Path, namespace: str) -> Any:
    obj = isvc(kubeconfig, namespace)
    return None if obj is None else obj["spec"]["predictor"].get("canaryTrafficPercent", "none")




@pytest.fixture
def served(prometheus: PrometheusInfo, request: pytest.FixtureRequest) -> Iterator[Callable[[str], ModelServer]]:
    """A model server for namespace `ns` scraped by the session's Prometheus: stable 1 and
    canary 2 at 20 requests/s, no errors."""
    servers: list[ModelServer] = []

    def start(namespace: str) -> ModelServer:
        server = ModelServer(namespace, "scorer")
        server.track("1", "stable", error_rate=0.0, rps=20.0)
        server.track("2", "canary", error_rate=0.0, rps=20.0)
        servers.append(server)
        prometheus_reload(prometheus, [s.target for s in servers])
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def controllers(kubeconfig: Path, prometheus: PrometheusInfo, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    started: list[tuple[Controller, threading.Thread]] = []

    def start(bare: Path) -> tuple[Controller, threading.Thread]:
        config = RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                           http_addr=None, cache_dir=tmp_path / f"mirrors-{len(started)}",
                           audit_log=tmp_path / "audit.jsonl", prometheus_url=prometheus.url)
        controller = Controller(config)
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        started.append((controller, thread))
        return controller, thread

    try:
        yield start
    finally:
        for controller, _ in started:
            controller.stop()
        for _, thread in started:
            thread.join(timeout=30)
            assert not thread.is_alive(), "the controller did not stop"


def test_healthy_canary_steps_to_100_and_the_outcome_reaches_git(
        tmp_path: Path, kubeconfig: Path, served: Callable[[str], ModelServer],
        controllers: Callable[..., Controller]) -> None:
    ns = "ro-healthy"
    _work, bare = rollout_repo(tmp_path / "repo", ns, steps=[20, 50, 100])
    served(ns)
    controllers(bare)
    seen: list[Any] = []

    def progressed() -> bool:
        traffic = canary_traffic(kubeconfig, ns)
        if traffic is not None and (not seen or seen[-1] != traffic):
            seen.append(traffic)
        return remote_model(bare)["spec"]["stable"] == "2"
    wait_until(progressed, "the rollout to finish and make 2 stable in Git", 120)
    assert [t for t in seen if t != "none"][:3] == [20, 50, 100]  # every step, in order
    model = remote_model(bare)
    assert "canary" not in model["spec"]  # Git says what serves now: 2, alone
    # the controller applies the commit it wrote: 2 at 100%, no canary split left
    wait_until(lambda: canary_traffic(kubeconfig, ns) == "none", "the stable 2 applied", 60)
    obj = isvc(kubeconfig, ns)
    assert obj is not None and obj["spec"]["predictor"]["model"]["storageUri"] == "s3://models/scorer/2/"
    audit = tmp_path / "audit.jsonl"
    kinds = [r["transition"] for r in audit_records(audit, "rollout")]
    assert kinds[:4] == ["started", "advanced", "advanced", "succeeded"], kinds
    assert "finished" in kinds
    outcome = audit_records(audit, "rollout-outcome")
    assert outcome and outcome[0]["outcome"] == "stable" and outcome[0]["pushed"]
    with Cluster.connect(str(kubeconfig)) as cluster:
        wait_until(lambda: "/".join((ns, "scorer")) not in load_rollouts(cluster, ns).states,
                   "the finished rollout's state removed", 30)


def test_unhealthy_canary_is_rolled_back_within_one_interval(
        tmp_path: Path, kubeconfig: Path, served: Callable[[str], ModelServer],
        controllers: Callable[..., Controller]) -> None:
    ns = "ro-unhealthy"
    _work, bare = rollout_repo(tmp_path / "repo", ns, steps=[20, 50, 100], interval="4s")
    server = served(ns)
    controller, _thread = controllers(bare)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 20, "the first step", 60)
    server.set("2", error_rate=0.5)
    raised = time.monotonic()
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 0, "the rollback to 0%", 30)
    # one interval (4 s) plus Prometheus' scrape and the rate window catching up
    assert time.monotonic() - raised < 4 + 8
    obj = isvc(kubeconfig, ns)
    assert obj is not None and obj["metadata"]["annotations"]  # the stable 1 kept serving: the ISVC was never removed
    audit = tmp_path / "audit.jsonl"
    rolled = [r for r in audit_records(audit, "rollout") if r["transition"] == "rolled-back"]
    assert rolled and rolled[0]["traffic"] == 0
    assert any(c["name"] == "error-rate" and c["ok"] is False for c in rolled[0]["checks"])
    with Cluster.connect(str(kubeconfig)) as cluster:
        events = cluster.request("GET", f"/api/v1/namespaces/{ns}/events")
    reasons = {e["reason"]: e for e in events["items"]}
    assert "RolloutRolledBack" in reasons and reasons["RolloutRolledBack"]["type"] == "Warning"
    assert remote_model(bare)["spec"]["stable"] == "1"  # nothing promoted in Git
    exposition = controller.metrics.exposition().decode()
    assert f'modelops_agent_rollout_transitions_total{{kind="rolled-back",model="{ns}/scorer"}} 1.0' in exposition
    assert f'modelops_agent_rollout_traffic_percent{{model="{ns}/scorer"}} 0.0' in exposition
    # it stays rolled back: a pass that began one interval (4 s) after the rollback was seen, when
    # a rollout that wrongly went on would have taken its next step
    wait_pass_after(controller, time.time() + 4, "one more rollout interval")
    assert canary_traffic(kubeconfig, ns) == 0


def agent_run(tmp_path: Path, bare: Path, kubeconfig: Path, prometheus: PrometheusInfo, name: str,
              ) -> subprocess.Popen[str]:
    """`agent run` as a process of its own (so a test can SIGKILL it), logging to tmp_path."""
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
    env = {**os.environ, "AGENT_CACHE_DIR": str(tmp_path / f"cache-{name}")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--repo", f"file://{bare}", "--interval", "1s", "--kubeconfig",
         str(kubeconfig), "--http-addr", "", "--audit-log", str(tmp_path / "audit.jsonl"),
         "--prometheus-url", prometheus.url], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    log.close()
    return proc


def test_a_killed_controller_resumes_at_the_same_step(
        tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo, served: Callable[[str], ModelServer]) -> None:
    ns = "ro-restart"
    _work, bare = rollout_repo(tmp_path / "repo", ns, steps=[10, 40, 70, 100], interval="6s")
    served(ns)
    procs = [agent_run(tmp_path, bare, kubeconfig, prometheus, "first")]
    try:
        wait_until(lambda: canary_traffic(kubeconfig, ns) == 40, "the second step", 90)
        procs[0].send_signal(signal.SIGKILL)  # no shutdown, no last write: the state in the cluster is all there is
        procs[0].wait(timeout=30)
        with Cluster.connect(str(kubeconfig)) as cluster:
            stored = load_rollouts(cluster, ns).states[f"{ns}/scorer"]
        assert stored["step"] == 1 and stored["traffic"] == 40
        procs.append(agent_run(tmp_path, bare, kubeconfig, prometheus, "second"))
        # the new controller goes on from 40 (never back to the first step's 10), to 70
        seen: list[Any] = []

        def at_70() -> bool:
            seen.append(canary_traffic(kubeconfig, ns))
            return seen[-1] == 70
        wait_until(at_70, "the third step after the restart", 90)
        assert 10 not in seen
        kinds = [r["transition"] for r in audit_records(tmp_path / "audit.jsonl", "rollout")]
        assert kinds.count("started") == 1, kinds
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


# --- the outcome as a pull request, on a real forge ------------------------------------------------

def hosted(work: Path, info: ForgeInfo, name: str) -> str:
    url = forge_create_repo(info, name)
    env = info.git_env()
    subprocess.run(["git", "remote", "add", "origin", url], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, env=env, check=True, capture_output=True,
                   timeout=60)
    return url


@pytest.mark.parametrize("healthy", [True, False], ids=["success-pr", "revert-pr"])
def test_outcome_as_a_pull_request_on_the_forge(
        tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo, gitea: ForgeInfo,
        served: Callable[[str], ModelServer], healthy: bool) -> None:
    """onSuccess: pullRequest opens a PR making the canary stable; revertPullRequest opens one
    removing a rolled-back canary. The controller follows the forge over HTTPS (token, CA)."""
    ns = "ro-pr-ok" if healthy else "ro-pr-bad"
    work, _bare = rollout_repo(tmp_path / "repo", ns, steps=[50, 100], interval="3s", on_success="pullRequest")
    model_file = work / "models" / "scorer.yaml"
    docs = list(yaml.safe_load_all(model_file.read_text()))
    docs[0]["spec"]["rollout"]["revertPullRequest"] = True
    model_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    subprocess.run([*GIT, "commit", "-qam", "revert PRs on"], cwd=work, check=True)
    url = hosted(work, gitea, ns)
    server = served(ns)
    if not healthy:
        server.set("2", error_rate=0.5)
    config = RunConfig(repo=url, interval=1.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                       cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl",
                       prometheus_url=prometheus.url, forge="gitea", forge_api_url=gitea.api_url,
                       credentials=Credentials(token_file=gitea.token_file, username=gitea.admin_user,
                                               ca_file=gitea.ca_file))
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    forge = open_forge(repo_ref(url, "gitea", gitea.api_url), gitea.token, ca_file=gitea.ca_file)
    try:
        head = f"rollout/{ns}-scorer-2" if healthy else f"rollback/{ns}-scorer-2"
        pr = wait_until(lambda: forge.find_pull(head, "main"), f"the PR from {head}", 90)
        if healthy:
            assert "2 stable (was 1)" in pr.title
            assert canary_traffic(kubeconfig, ns) == 100  # the switch happened; Git follows through the PR
        else:
            assert "canary 2 removed" in pr.title
            assert canary_traffic(kubeconfig, ns) == 0  # the rollback reached the cluster before Git
        assert "InferenceService" in pr.body
        outcome = wait_until(lambda: audit_records(tmp_path / "audit.jsonl", "rollout-outcome"),
                             "the outcome's audit record", 15)
        assert outcome[-1]["pull_request"] == pr.url
    finally:
        forge.close()
        controller.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_blue_green_switches_only_after_analysis_and_back_on_failure(
        tmp_path: Path, kubeconfig: Path, served: Callable[[str], ModelServer],
        controllers: Callable[..., Controller]) -> None:
    ns = "ro-bluegreen"
    _work, bare = rollout_repo(tmp_path / "repo", ns, steps=[], interval="4s", on_success="none",
                               blue_green={"scaleDownDelay": "5m"})
    server = served(ns)
    server.set("2", error_rate=0.5)  # an unhealthy preview must never get traffic
    controllers(bare)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 0, "the preview at 0%", 60)
    obj = isvc(kubeconfig, ns)
    assert obj is not None and obj["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    audit = tmp_path / "audit.jsonl"
    wait_until(lambda: [r for r in audit_records(audit, "rollout") if r["transition"] == "rolled-back"],
               "the failing preview rolled back", 30)
    assert canary_traffic(kubeconfig, ns) == 0  # never switched

    # Git names the same version again after a fix: a new rollout of it needs a new canary entry,
    # so here the test restarts the story with a healthy preview in a second namespace.
    ns2 = "ro-bluegreen-2"
    _work2, bare2 = rollout_repo(tmp_path / "repo2", ns2, steps=[], interval="4s", on_success="none",
                                 blue_green={"scaleDownDelay": "5m"})
    server2 = served(ns2)
    controllers(bare2)
    wait_until(lambda: canary_traffic(kubeconfig, ns2) == 0, "the healthy preview at 0%", 60)
    switched_at = wait_until(lambda: canary_traffic(kubeconfig, ns2) == 100 and time.monotonic(),
                             "the switch after the analysis passed", 60)
    kinds = [r["transition"] for r in audit_records(audit, "rollout") if r["model"] == f"{ns2}/scorer"]
    assert kinds[:2] == ["started", "switched"], kinds
    server2.set("2", error_rate=0.5)
    wait_until(lambda: canary_traffic(kubeconfig, ns2) == 0, "the switch back", 30)
    assert time.monotonic() - switched_at < 60  # within the scale-down delay
    kinds = [r["transition"] for r in audit_records(audit, "rollout") if r["model"] == f"{ns2}/scorer"]
    assert "rolled-back" in kinds
