"""Issue #4 end to end on the real control plane: apply, no-op, drift, prune, budget, bad commit,
audit log, health. The tests share one git repo (a copy of examples/model-repo) and run in order.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import FIELD_MANAGER, Cluster
from agent.engine import Engine, EngineOptions, load_desired, selector
from agent.render import object_key, ref

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"
WRITE_VERBS = {"APPLY", "PATCH", "POST", "PUT", "DELETE", "CREATE", "UPDATE", "DELETECOLLECTION"}
KUBECTL = str(Path(sys.executable).parent / "kubectl")
GIT = ["git", "-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com"]


def agent(*args: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def kubectl(kubeconfig: Path, *args: str) -> str:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def commit(repo: Path, message: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gitops") / "model-repo"
    shutil.copytree(EXAMPLE, path)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    commit(path, "initial model repo")
    return path


@pytest.fixture(scope="module")
def audit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit") / "audit.jsonl"


def managed(kubeconfig: Path, target: str = "ml-platform") -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every object carrying our target label, as the API server has it."""
    desired = load_desired(EXAMPLE)
    kinds = {(o["apiVersion"], o["kind"]) for o in desired.objects}
    out = {}
    with Cluster.connect(str(kubeconfig)) as cluster:
        for api_version, kind in kinds:
            for obj in cluster.list(cluster.kind(api_version, kind), selector(target)):
                out[object_key(obj)] = obj
    return out


def status_json(repo: Path, kubeconfig: Path) -> dict[str, Any]:
    out = agent("status", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "-o", "json")
    return dict(json.loads(out.stdout))


def settled(repo: Path, kubeconfig: Path) -> bool:
    """No model still progressing (Degraded counts: the dev cluster has no metrics server)."""
    return all(m["health"] in ("Healthy", "Unknown", "Degraded") for m in status_json(repo, kubeconfig)["models"])


def write_metrics(kubeconfig: Path, resources: set[str]) -> Counter[str]:
    """apiserver_request_total for write verbs on our resources (main resource, not status)."""
    text = kubectl(kubeconfig, "get", "--raw", "/metrics")
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in resources and not labels.get("subresource"):
            counts[f"{labels['verb']} {labels['resource']}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_apply_examples_then_noop(repo: Path, kubeconfig: Path, audit_log: Path, wait_for: Any) -> None:
    discovery_files = set(Path(tempfile.gettempdir()).glob("osrcp-*.json"))
    out = agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig),
                "--audit-log", str(audit_log), "--color", "never", check=0)
    # the dynamic client's default discoverer writes a cache file to /tmp; ours does not discover
    assert set(Path(tempfile.gettempdir()).glob("osrcp-*.json")) == discovery_files
    desired = load_desired(repo, "HEAD")
    live = managed(kubeconfig)
    assert set(live) == {object_key(o) for o in desired.objects}, out.stdout
    for obj in live.values():
        managers = {m["manager"] for m in obj["metadata"]["managedFields"] if m["operation"] == "Apply"}
        assert FIELD_MANAGER in managers, ref(obj)
    events = json.loads(kubectl(kubeconfig, "get", "events", "-n", "fraud", "-o", "json"))["items"]
    applied = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events
               if e["reason"] == "Applied" and e["source"].get("component") == FIELD_MANAGER}
    assert ("InferenceService", "fraud-scorer") in applied

    # kubernetes-backend models settle first (Deployment controller), so the no-op is measured
    # in a steady state
    wait_for(lambda: settled(repo, kubeconfig), "models settled", timeout=120)

    assert agent("diff", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig)).returncode == 0

    resources = {"configmaps", "secrets", "services", "serviceaccounts", "namespaces", "inferenceservices",
                 "servingruntimes", "prometheusrules", "servicemonitors", "podmonitors", "horizontalpodautoscalers"}
    before = write_metrics(kubeconfig, resources)
    with Cluster.connect(str(kubeconfig)) as cluster:
        outcome = Engine(cluster, EngineOptions(audit_log=audit_log, rollout_traffic=False)).apply(desired)
    after = write_metrics(kubeconfig, resources)
    assert not outcome.plan.has_changes
    assert outcome.report.results == []
    assert cluster.writes == 0, outcome.requests
    kinds = len({(o["apiVersion"], o["kind"]) for o in desired.objects})
    assert sum(outcome.requests.values()) <= kinds + 3, outcome.requests
    assert after == before, f"API server saw writes: {after - before}"


def test_drift_is_reported_with_its_manager_and_repaired(repo: Path, kubeconfig: Path, audit_log: Path) -> None:
    kubectl(kubeconfig, "patch", "deployment", "-n", "recsys", "candidate-retrieval", "-p", '{"spec":{"replicas":5}}')
    diff = agent("diff", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--color", "never", check=1)
    assert "Deployment/recsys/candidate-retrieval" in diff.stdout
    assert "spec.replicas by kubectl-patch" in diff.stdout
    assert "replicas 5 -> replicas 3" in diff.stdout

    as_json = json.loads(agent("diff", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig),
                               "-o", "json", check=1).stdout)
    drifted = [o for o in as_json["objects"] if o["drift"]]
    assert [(o["kind"], o["name"], o["drift"]) for o in drifted] == [
        ("Deployment", "candidate-retrieval", [{"field": "spec.replicas", "manager": "kubectl-patch"}])
    ]

    agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--audit-log", str(audit_log), check=0)
    assert kubectl(kubeconfig, "get", "deployment", "-n", "recsys", "candidate-retrieval",
                   "-o", "jsonpath={.spec.replicas}") == "3"
    assert agent("diff", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig)).returncode == 0


def test_prune_deletes_exactly_the_removed_model(repo: Path, kubeconfig: Path, audit_log: Path) -> None:
    # look-alikes that must survive: no labels at all, and our labels but never in the inventory
    kubectl(kubeconfig, "create", "configmap", "txn-anomaly", "-n", "fraud", "--from-literal=a=b")
    sneaky = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "txn-anomaly-config", "namespace": "fraud",
                     "labels": {"app.kubernetes.io/managed-by": "modelops-agent", "modelops.dev/target": "ml-platform",
                                "modelops.dev/model": "txn-anomaly"}},
        "data": {"k": "v"},
    }
    subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"], input=json.dumps(sneaky),
                   check=True, capture_output=True, text=True)

    old = {object_key(o) for o in load_desired(repo, "HEAD").objects}
    (repo / "teams/fraud/models/txn-anomaly.yaml").unlink()
    (repo / "teams/fraud/monitors/txn-anomaly.yaml").unlink()
    commit(repo, "retire txn-anomaly")
    new = {object_key(o) for o in load_desired(repo, "HEAD").objects}
    removed = old - new
    assert any(k[1] == "InferenceService" for k in removed)

    before = managed(kubeconfig)
    agent("apply", str(repo), "--revision", "HEAD", "--prune", "--kubeconfig", str(kubeconfig),
          "--audit-log", str(audit_log), check=0)
    after = managed(kubeconfig)
    assert set(before) - set(after) == removed
    assert kubectl(kubeconfig, "get", "configmap", "-n", "fraud", "txn-anomaly", "-o", "name") == "configmap/txn-anomaly\n"
    events = json.loads(kubectl(kubeconfig, "get", "events", "-n", "fraud", "-o", "json"))["items"]
    assert any(e["reason"] == "Pruned" and e["involvedObject"]["name"] == "txn-anomaly" for e in events)
    assert "txn-anomaly-config" in kubectl(kubeconfig, "get", "configmap", "-n", "fraud", "-o", "name")


def test_conflict_policy_skip_reports_the_other_manager(repo: Path, kubeconfig: Path, audit_log: Path) -> None:
    # another controller takes a field we own by a forced server-side apply
    patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "feature-store", "namespace": "fraud"},
             "data": {"FEAST_PROJECT": "hijacked"}}
    subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "--server-side", "--force-conflicts",
                    "--field-manager", "feature-bot", "-f", "-"], input=json.dumps(patch), check=True,
                   capture_output=True, text=True)
    data = json.loads(kubectl(kubeconfig, "get", "configmap", "-n", "fraud", "feature-store", "-o", "json"))["data"]
    assert data["FEAST_PROJECT"] == "hijacked"

    skipped = agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--conflicts", "skip",
                    "--audit-log", str(audit_log), "--color", "never", check=0)
    assert re.search(r"skipped\s+update\s+ConfigMap/fraud/feature-store: conflict with feature-bot", skipped.stdout)
    data = json.loads(kubectl(kubeconfig, "get", "configmap", "-n", "fraud", "feature-store", "-o", "json"))["data"]
    assert data["FEAST_PROJECT"] == "hijacked"

    agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--audit-log", str(audit_log),
          check=0)  # default policy: force, Git wins
    data = json.loads(kubectl(kubeconfig, "get", "configmap", "-n", "fraud", "feature-store", "-o", "json"))["data"]
    assert data["FEAST_PROJECT"] != "hijacked"
    assert agent("diff", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig)).returncode == 0


def test_emptied_repo_is_refused_by_the_prune_budget(repo: Path, kubeconfig: Path, audit_log: Path) -> None:
    before = managed(kubeconfig)
    for path in (repo / "teams").rglob("*.yaml"):
        path.unlink()
    for path in (repo / "infra").rglob("*.yaml"):
        path.unlink()
    commit(repo, "oops: everything deleted")
    proc = agent("apply", str(repo), "--revision", "HEAD", "--prune", "--kubeconfig", str(kubeconfig),
                 "--audit-log", str(audit_log), check=2)
    assert "refusing to prune" in proc.stderr
    last = json.loads(audit_log.read_text().splitlines()[-1])
    assert (last["event"], last["result"]) == ("reconcile", "refused") and "refusing to prune" in last["error"]
    assert set(managed(kubeconfig)) == set(before)
    subprocess.run([*GIT, "revert", "--no-edit", "HEAD"], cwd=repo, check=True, capture_output=True)


def test_invalid_commit_applies_nothing(repo: Path, kubeconfig: Path) -> None:
    before = {k: o["metadata"]["resourceVersion"] for k, o in managed(kubeconfig).items()}
    model = repo / "teams/recsys/models/candidate-retrieval.yaml"
    text = model.read_text()
    broken = text.replace("replicas: 3", "replicas: three").replace('stable: "7"', 'stable: "8"')
    assert broken != text
    model.write_text(broken)
    commit(repo, "bad edit")
    line = next(i for i, s in enumerate(broken.splitlines(), start=1) if "replicas: three" in s)
    proc = agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), check=2)
    assert f"teams/recsys/models/candidate-retrieval.yaml:{line}: spec.replicas:" in proc.stderr
    after = {k: o["metadata"]["resourceVersion"] for k, o in managed(kubeconfig).items()}
    assert after == before
    subprocess.run([*GIT, "revert", "--no-edit", "HEAD"], cwd=repo, check=True, capture_output=True)


def test_dry_run_plans_and_audits_but_changes_nothing(repo: Path, kubeconfig: Path, audit_log: Path) -> None:
    model = repo / "teams/fraud/models/fraud-scorer.yaml"
    model.write_text(re.sub(r"traffic: 10\b", "traffic: 40", model.read_text(), count=1))
    commit(repo, "fraud-scorer canary to 40%")
    before = {k: o["metadata"]["resourceVersion"] for k, o in managed(kubeconfig).items()}
    proc = agent("apply", str(repo), "--revision", "HEAD", "--dry-run", "--kubeconfig", str(kubeconfig),
                 "--audit-log", str(audit_log), "--color", "never", check=0)
    assert "fraud/fraud-scorer: canary 10% -> 40%" in proc.stdout
    assert re.search(r"skipped\s+update\s+InferenceService/fraud/fraud-scorer: dry run", proc.stdout)
    assert {k: o["metadata"]["resourceVersion"] for k, o in managed(kubeconfig).items()} == before
    records = [json.loads(x) for x in audit_log.read_text().splitlines()[-2:]]
    assert [(r["event"], r["dry_run"]) for r in records] == [("object", True), ("reconcile", True)]
    assert records[0]["fields"] == ["metadata.annotations.modelops.dev/canary-traffic",
                                    "spec.predictor.canaryTrafficPercent"]
    subprocess.run([*GIT, "revert", "--no-edit", "HEAD"], cwd=repo, check=True, capture_output=True)


def test_audit_log_verifies_and_detects_tampering(audit_log: Path, kubeconfig: Path, tmp_path: Path) -> None:
    verify = ("audit", "verify", "--target", "ml-platform", "--kubeconfig", str(kubeconfig))
    assert "records intact, anchored at seq" in agent(*verify[:2], str(audit_log), *verify[2:], check=0).stdout
    lines = audit_log.read_text().splitlines(keepends=True)
    records = [json.loads(x) for x in lines]
    assert {r["event"] for r in records} == {"intent", "object", "reconcile"}
    # every write was announced before it was sent: an intent precedes each non-dry-run result
    announced: set[tuple[str, str, str]] = set()
    for r in records:
        key = (r.get("object") or {}).get("kind"), (r.get("object") or {}).get("namespace"), (r.get("object") or {}).get("name")
        if r["event"] == "intent":
            announced.add(key)
        elif r["event"] == "object" and not r["dry_run"]:
            assert key in announced, r
    assert any(r.get("drift") == {"spec.replicas": "kubectl-patch"} for r in records)
    assert all(r["agent"].startswith(FIELD_MANAGER) for r in records)
    secrets = [o for o in load_desired(EXAMPLE).objects if o["kind"] == "Secret"]
    values = [str(v) for s in secrets for v in {**s.get("data", {}), **s.get("stringData", {})}.values()]
    assert values and not any(v in "".join(lines) for v in values)

    def check(name: str, content: list[str], expect: str) -> None:
        copy = tmp_path / name
        copy.write_text("".join(content))
        proc = agent(*verify[:2], str(copy), *verify[2:], check=1)
        assert expect in proc.stdout, proc.stdout

    edited = list(lines)
    at = next(i for i, line in enumerate(lines) if '"result":"applied"' in line)
    edited[at] = edited[at].replace('"result":"applied"', '"result":"failed"')
    check("edited.jsonl", edited, f"line {at + 1}")
    check("removed.jsonl", lines[:2] + lines[3:], "line 3")
    check("reordered.jsonl", [lines[1], lines[0], *lines[2:]], "line 1")
    inventory = json.loads(kubectl(kubeconfig, "get", "configmap", "-n", "modelops-system",
                                   "modelops-inventory-ml-platform", "-o", "json"))
    anchored = int(inventory["metadata"]["annotations"]["modelops.dev/audit-seq"])
    # after the anchor: the closing record of the last writing reconcile, then the dry run's records
    assert anchored < len(lines) and not [r for r in records[anchored:] if r["event"] == "intent"]
    check("truncated.jsonl", lines[: anchored - 1], "tail was cut")
    # a torn final line (crash mid-write) does not break the records before it
    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(lines) + '{"seq": 99, "ev')
    assert agent("audit", "verify", str(torn), check=0).stdout.startswith("ok:")


def test_health_of_kubernetes_backend(repo: Path, kubeconfig: Path, wait_for: Any) -> None:
    def healthy() -> bool:
        model = next(m for m in status_json(repo, kubeconfig)["models"] if m["name"] == "candidate-retrieval")
        return bool(model["synced"] and model["health"] == "Healthy" and model["lastApply"]["result"] == "succeeded")

    wait_for(healthy, "candidate-retrieval healthy", timeout=120)
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-n", "recsys", "-l",
                              "modelops.dev/model=candidate-retrieval", "-o", "json"))["items"]
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" and p["spec"]["nodeName"].startswith("kwok") for p in pods)

    # ranker autoscales on CPU, and the dev cluster has no metrics server: its HPA says so,
    # and the agent reports the model Degraded (as Argo CD would) instead of waiting forever
    def ranker() -> dict[str, Any]:
        return next(m for m in status_json(repo, kubeconfig)["models"] if m["name"] == "ranker")

    wait_for(lambda: ranker()["health"] == "Degraded", "the ranker HPA to report missing metrics", timeout=120)
    assert "ScalingActive" in ranker()["message"] and "metrics" in ranker()["message"]

    # an InferenceService whose status says nothing (KServe not there, or not reporting): Unknown,
    # which --wait does not take for settled unless told to; it times out naming it. Here the
    # devcluster's simulated KServe status is switched off for fraud-scorer and its status cleared.
    kubectl(kubeconfig, "annotate", "inferenceservice", "-n", "fraud", "fraud-scorer", "--overwrite",
            "devcluster.modelops.dev/kserve=off")
    kubectl(kubeconfig, "patch", "inferenceservice", "-n", "fraud", "fraud-scorer", "--subresource=status",
            "--type=merge", "-p", '{"status":{"conditions":[]}}')
    unsettled = agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--wait",
                      "--timeout", "2", "--color", "never", check=2)
    assert re.search(r"timed out after 2s waiting for \d+ model\(s\) to settle: .*fraud/fraud-scorer \(Unknown\)",
                     unsettled.stderr), unsettled.stderr
    waited = agent("apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--wait",
                   "--allow-unknown", "--timeout", "60", "--color", "never", check=2)
    assert re.search(r"recsys/candidate-retrieval\s+7\s+-\s+yes\s+Healthy", waited.stdout), waited.stdout
    assert re.search(r"recsys/ranker\s+\S+\s+-\s+yes\s+Degraded", waited.stdout), waited.stdout
    assert "degraded: recsys/ranker" in waited.stderr
    kubectl(kubeconfig, "annotate", "inferenceservice", "-n", "fraud", "fraud-scorer", "devcluster.modelops.dev/kserve-")
    kubectl(kubeconfig, "patch", "inferenceservice", "-n", "fraud", "fraud-scorer", "--subresource=status",
            "--type=merge", "-p", '{"status":{"observedGeneration":0}}')  # the simulated KServe reports again
