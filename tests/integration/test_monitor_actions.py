"""Monitor actions (#11 item 4) on the local control plane with a real Prometheus: the agent's
rendered PrometheusRule is loaded into the session's Prometheus, a fake model server's error
rate is raised, and the controller (in-process, --prometheus-url) acts on the firing alert:
`action: rollback` ends a running canary (traffic 0 on the InferenceService); `action: retrain`
starts exactly one Job, however often the alert is seen (polled each tick, pushed to /alerts)
and across a controller restart."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cluster import Cluster
from agent.controller import Controller, RunConfig
from agent.metrics_source import Prometheus
from agent.render import prometheus_rule
from agent.source import DirectorySource
from agent.spec import load
from devenv.cluster import PrometheusInfo, prometheus_reload
from tests.integration._model_server import ModelServer
from tests.integration._passes import wait_passes
from tests.integration._repos import GIT
from tests.integration.conftest import audit_records, wait_until

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"
SECRET = "alert-s3cret"
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": {"team": "fraud"}},
       "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
           {"name": "train", "image": "registry.example/train:1", "command": ["true"]}]}}}}


def alert_repo(root: Path, ns: str, action: str) -> tuple[Path, Path]:
    """Target and namespace `ns`, one KServe model `scorer` (stable 1; with action rollback also
    a canary 2 under a [20, 100] rollout whose step lasts an hour, so only the alert ends it), a
    Monitor whose errorRate rule fires within seconds. Returns (working clone, bare remote)."""
    work = root / "work"
    work.mkdir(parents=True)
    spec: dict[str, Any] = {"format": "sklearn", "runtime": "sklearn-server", "backend": "kserve",
                            "versions": [{"version": "1", "uri": "s3://models/scorer/1/"},
                                         {"version": "2", "uri": "s3://models/scorer/2/"}],
                            "stable": "1", "replicas": 1}
    rule: dict[str, Any] = {"name": "error-rate", "type": "errorRate", "threshold": 0.1, "window": "10s",
                            "for": "1s", "action": action}
    docs: dict[str, Any] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": ns},
                       "spec": {"policy": {"allowedNamespaces": [ns]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
    }
    if action == "rollback":
        spec.update(canary={"version": "2"}, rollout={"strategy": "canary", "steps": [20, 100], "interval": "1h"})
    else:
        rule["retrain"] = {"jobTemplate": "training/retrain.yaml", "cooldown": "6h"}
        docs["training/retrain.yaml"] = [JOB]
    docs["models/scorer.yaml"] = [
        {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": ns}, "spec": spec},
        {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer-slo", "namespace": ns},
         "spec": {"model": "scorer", "rules": [rule]}},
    ]
    for rel, content in docs.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", f"scorer with an action: {action} monitor"], cwd=work, check=True)
    bare = root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return work, bare


def rule_file(work: Path, out: Path) -> tuple[Path, str]:
    """The repo's rendered PrometheusRule as a Prometheus rule file, and its alert's name."""
    spec = load(DirectorySource(work).snapshot().files)
    rendered = prometheus_rule(spec.monitors[0], spec.config.metrics)
    out.write_text(yaml.safe_dump(rendered["spec"]))
    return out, rendered["spec"]["groups"][0]["rules"][0]["alert"]




def canary_traffic(kubeconfig: Path, ns: str) -> Any:
    with Cluster.connect(str(kubeconfig)) as cluster:
        obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", ns)
    return None if obj is None else obj["spec"]["predictor"].get("canaryTrafficPercent", "none")


def jobs(kubeconfig: Path, ns: str) -> list[dict[str, Any]]:
    with Cluster.connect(str(kubeconfig)) as cluster:
        listed = cluster.request("GET", f"/apis/batch/v1/namespaces/{ns}/jobs",
                                 query={"labelSelector": "modelops.dev/model=scorer"})
    return list(listed["items"])


def events(kubeconfig: Path, ns: str) -> dict[str, dict[str, Any]]:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return {e["reason"]: e for e in cluster.request("GET", f"/api/v1/namespaces/{ns}/events")["items"]}


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> int:
    body = json.dumps({"version": "4", "status": "firing", "receiver": "modelops", "alerts": alerts}).encode()
    req = urllib.request.Request(url + "/alerts", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture
def controllers(kubeconfig: Path, prometheus: PrometheusInfo, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    started: list[tuple[Controller, threading.Thread]] = []
    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")

    def start(bare: Path) -> Controller:
        config = RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                           http_addr="127.0.0.1:0", webhook_secret_file=secret,
                           cache_dir=tmp_path / f"mirrors-{len(started)}", audit_log=tmp_path / "audit.jsonl",
                           prometheus_url=prometheus.url)
        controller = Controller(config)
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        started.append((controller, thread))
        wait_until(lambda: controller.http is not None, "the controller's HTTP server", 30)
        return controller

    def stop(controller: Controller) -> None:
        for c, thread in started:
            if c is controller:
                c.stop()
                thread.join(timeout=30)
                assert not thread.is_alive(), "the controller did not stop"

    start.stop = stop  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for controller, _ in started:
            controller.stop()
        for _, thread in started:
            thread.join(timeout=30)
            assert not thread.is_alive(), "the controller did not stop"


def firing(prometheus: PrometheusInfo, alertname: str, ns: str) -> list[dict[str, Any]]:
    return [a for a in Prometheus(prometheus.url, timeout=5).alerts()
            if a["labels"].get("alertname") == alertname and a["labels"].get("namespace") == ns
            and a["state"] == "firing"]


def test_rollback_alert_ends_a_running_canary(tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo,
                                              controllers: Callable[..., Controller]) -> None:
    ns = "alert-rollback"
    work, bare = alert_repo(tmp_path / "repo", ns, "rollback")
    rules, alertname = rule_file(work, tmp_path / "rules.yml")
    server = ModelServer(ns, "scorer").track("1", "stable").track("2", "canary")
    try:
        prometheus_reload(prometheus, [server.target], rule_files=[rules])
        controller = controllers(bare)
        wait_until(lambda: canary_traffic(kubeconfig, ns) == 20, "the first canary step", 60)
        wait_passes(controller, 2, "rollout ticks at the first step")
        assert canary_traffic(kubeconfig, ns) == 20  # an hour-long step: it stays there on its own
        server.set("1", error_rate=0.5)
        server.set("2", error_rate=0.5)
        raised = time.monotonic()
        wait_until(lambda: firing(prometheus, alertname, ns), "the alert to fire", 40)
        wait_until(lambda: canary_traffic(kubeconfig, ns) == 0, "the alert to end the canary (traffic 0)", 30)
        print(f"\nrollback alert: canary at 0% {time.monotonic() - raised:.1f}s after the error rate rose")
        aborted = [r for r in audit_records(tmp_path / "audit.jsonl", "rollout") if r["transition"] == "aborted"]
        assert len(aborted) == 1 and f"alert {alertname}" in aborted[0]["reason"] and aborted[0]["traffic"] == 0
        ev = events(kubeconfig, ns)
        assert "RolloutAborted" in ev and ev["RolloutAborted"]["type"] == "Warning"
        # the alert keeps firing: passes read it again (each acts on every firing alert), and
        # nothing more happens, the canary stays at 0
        wait_until(lambda: firing(prometheus, alertname, ns), "the alert still firing", 10)
        wait_passes(controller, 2, "passes while the alert fires")
        assert canary_traffic(kubeconfig, ns) == 0
        assert len([r for r in audit_records(tmp_path / "audit.jsonl", "rollout") if r["transition"] == "aborted"]) == 1
    finally:
        server.close()


def test_retrain_alert_starts_exactly_one_job(tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo,
                                              controllers: Callable[..., Controller]) -> None:
    ns = "alert-retrain"
    work, bare = alert_repo(tmp_path / "repo", ns, "retrain")
    rules, alertname = rule_file(work, tmp_path / "rules.yml")
    server = ModelServer(ns, "scorer").track("1", "stable")
    try:
        prometheus_reload(prometheus, [server.target], rule_files=[rules])
        first = controllers(bare)
        wait_until(lambda: first.ready, "the first sync", 60)
        assert jobs(kubeconfig, ns) == []  # the template is not applied as a manifest
        server.set("1", error_rate=0.5)
        alert = wait_until(lambda: firing(prometheus, alertname, ns), "the alert to fire", 40)[0]
        created = wait_until(lambda: jobs(kubeconfig, ns), "the retraining Job", 30)
        assert len(created) == 1
        job = created[0]
        meta = job["metadata"]
        assert meta["name"].startswith("scorer-retrain-")
        assert {k: meta["labels"][k] for k in ("app.kubernetes.io/managed-by", "modelops.dev/target",
                                               "modelops.dev/model", "modelops.dev/rule", "team")} == {
            "app.kubernetes.io/managed-by": "modelops-agent", "modelops.dev/target": ns,
            "modelops.dev/model": "scorer", "modelops.dev/rule": "error-rate", "team": "fraud"}
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env == {"MODEL": "scorer", "MODEL_VERSION": "1", "ALERT": alertname}

        wait_passes(first, 3, "passes while the alert keeps firing")
        pushed = {"status": "firing", "labels": alert["labels"], "annotations": alert["annotations"],
                  "startsAt": alert["activeAt"], "endsAt": "0001-01-01T00:00:00Z"}
        assert first.http is not None
        assert post_alerts(first.http.url, [pushed]) == 200
        wait_passes(first, 2, "the pushed alert acted on")
        assert [j["metadata"]["name"] for j in jobs(kubeconfig, ns)] == [meta["name"]]

        controllers.stop(first)  # type: ignore[attr-defined]
        second = controllers(bare)  # no memory of the first's Job: the API is the record
        wait_until(lambda: second.ready, "the restarted controller's first sync", 60)
        assert second.http is not None
        assert post_alerts(second.http.url, [pushed]) == 200
        pushed_later = {**pushed, "startsAt": "2099-01-01T00:00:00Z"}  # another episode, within the cooldown
        assert post_alerts(second.http.url, [pushed_later]) == 200
        wait_passes(second, 3, "the pushed alerts acted on, and Prometheus' firing one")
        assert firing(prometheus, alertname, ns)  # still firing all along
        assert [j["metadata"]["name"] for j in jobs(kubeconfig, ns)] == [meta["name"]]

        records = audit_records(tmp_path / "audit.jsonl", "retrain")
        assert len(records) == 1 and records[0]["job"] == meta["name"] and records[0]["rule"] == "error-rate"
        assert "RetrainStarted" in events(kubeconfig, ns)
        sample = second.metrics.registry.get_sample_value
        assert sample("modelops_agent_retrain_jobs_total", {"model": f"{ns}/scorer", "rule": "error-rate"}) is None
        assert first.metrics.registry.get_sample_value(
            "modelops_agent_retrain_jobs_total", {"model": f"{ns}/scorer", "rule": "error-rate"}) == 1
    finally:
        server.close()
