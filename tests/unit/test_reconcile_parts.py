"""Pure parts of the reconcile side, without a cluster: normalization and field ownership, health,
the prune budget, the retry policy, and the audit log's chain on a local file."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from agent import health
from agent.apply import PruneRefused, check_prune_budget
from agent.audit import AuditLog, verify
from agent.cluster import Cluster, ClusterError
from agent.plan import build_plan, change
from agent.plan._normalize import field_owners, normalize, owned_fields_hash

LIVE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "ranker", "namespace": "recsys", "uid": "u1", "resourceVersion": "42", "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "annotations": {"deployment.kubernetes.io/revision": "2", "team": "recsys"},
        "managedFields": [
            {"manager": "modelops-agent", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                 'k:{"name":"model"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}},
            {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsV1": {"f:status": {"f:replicas": {}}}},
        ],
    },
    "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "model", "image": "a:1"}]}}},
    "status": {"replicas": 5},
}


def test_normalize_drops_what_the_server_owns() -> None:
    out = normalize(LIVE)
    assert "status" not in out
    assert set(out["metadata"]) == {"name", "namespace", "annotations"}
    assert out["metadata"]["annotations"] == {"team": "recsys"}
    assert out["spec"] == LIVE["spec"]


def test_field_owners_names_the_other_manager_and_ignores_status_writers() -> None:
    assert field_owners(LIVE, "spec.replicas", exclude="modelops-agent") == ["kubectl-patch"]
    assert field_owners(LIVE, "spec.template.spec.containers[0].image", exclude="modelops-agent") == []
    assert field_owners(LIVE, "spec.template.spec.containers[0].image", exclude="someone") == ["modelops-agent"]


def test_owned_fields_hash_changes_when_our_fields_change() -> None:
    before = owned_fields_hash(LIVE, "modelops-agent")
    taken = json.loads(json.dumps(LIVE))
    taken["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][
        'k:{"name":"model"}'].pop("f:image")
    assert owned_fields_hash(taken, "modelops-agent") != before
    other = json.loads(json.dumps(LIVE))
    other["metadata"]["managedFields"][1]["fieldsV1"] = {"f:metadata": {"f:labels": {}}}
    assert owned_fields_hash(other, "modelops-agent") == before


def _deployment(generation: int, observed: int, replicas: int, updated: int, available: int,
                available_condition: str = "True") -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                       "availableReplicas": available,
                       "conditions": [{"type": "Available", "status": available_condition}]}}


@pytest.mark.parametrize(("obj", "state"), [
    (_deployment(2, 2, 3, 3, 3), "Healthy"),
    (_deployment(3, 2, 3, 3, 3), "Progressing"),
    (_deployment(2, 2, 3, 1, 1), "Progressing"),
    (_deployment(2, 2, 3, 3, 2), "Progressing"),
    ({"kind": "InferenceService", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Healthy"),
    ({"kind": "InferenceService", "status": {"conditions": [{"type": "Ready", "status": "False", "message": "boom"}]}},
     "Degraded"),
    ({"kind": "InferenceService", "status": {}}, "Unknown"),
    ({"kind": "HorizontalPodAutoscaler", "status": {}}, "Progressing"),
    ({"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 3, "desiredReplicas": 3, "conditions": [
        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}}, "Healthy"),
    ({"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 1, "desiredReplicas": 3, "conditions": [
        {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]}}, "Progressing"),
    ({"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 3, "desiredReplicas": 3, "conditions": [
        {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "no metrics"}]}},
     "Degraded"),
    ({"kind": "HorizontalPodAutoscaler", "status": {"currentReplicas": 3, "desiredReplicas": 3, "conditions": [
        {"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"}]}}, "Healthy"),
    (None, "Missing"),
])
def test_health(obj: dict[str, Any] | None, state: str) -> None:
    assert health.of(obj).state == state


def test_worst_health_wins_and_keeps_a_message() -> None:
    verdict = health.worst([health.Health("Healthy"), health.Health("Healthy", "3/3 replicas available")])
    assert verdict == health.Health("Healthy", "3/3 replicas available")
    assert health.worst([health.Health("Healthy"), health.Health("Degraded", "x")]).state == "Degraded"


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


def test_prune_budget() -> None:
    plan = build_plan([change("delete", _cm(f"c{i}"), None) for i in range(3)])
    check_prune_budget(plan, managed=20, max_fraction=0.2, max_count=5)  # 15%: fine
    with pytest.raises(PruneRefused, match="refusing to prune 3 of 10"):
        check_prune_budget(plan, managed=10, max_fraction=0.2, max_count=5)
    with pytest.raises(PruneRefused, match="budget is 2 objects"):
        check_prune_budget(plan, managed=100, max_fraction=0.5, max_count=2)
    check_prune_budget(build_plan([change("create", None, _cm("x"))]), managed=0, max_fraction=0, max_count=0)


def test_retry_policy() -> None:
    cluster = Cluster(k8s.ApiClient(k8s.Configuration()), retries=3, backoff=0.001)
    calls: list[int] = []

    def flaky(status: int, message: str = "") -> Any:
        def call() -> str:
            calls.append(status)
            if len(calls) < 3:
                raise ClusterError(status, message)
            return "ok"
        return call

    assert cluster._retry(flaky(503)) == "ok" and calls == [503, 503, 503]
    calls.clear()
    assert cluster._retry(flaky(409, "the object has been modified; please apply your changes")) == "ok"
    for status, message in [(409, 'Apply failed with 1 conflict: conflict with "x"'), (422, "invalid"), (404, "")]:
        calls.clear()
        with pytest.raises(ClusterError):
            cluster._retry(flaky(status, message))
        assert len(calls) == 1, (status, message)
    calls.clear()
    with pytest.raises(ClusterError):
        Cluster(k8s.ApiClient(k8s.Configuration()), retries=1, backoff=0.001)._retry(flaky(500))
    assert len(calls) == 2


def test_audit_chain_on_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "tester") as log:
        for i in range(4):
            log.write("object", n=i)
    assert verify(path).ok and verify(path).records == 4
    lines = path.read_text().splitlines(keepends=True)
    records = [json.loads(x) for x in lines]
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert all(r["prev_hash"] == p["hash"] for p, r in itertools.pairwise(records))

    path.write_text("".join(lines) + '{"seq": 5, "tor')  # crash mid-write
    assert verify(path).ok
    with AuditLog(path, "tester") as log:  # reopening cuts the torn line and continues the chain
        assert log.write("object", n=5)[0] == 5
    assert verify(path).ok and verify(path).records == 5

    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + lines[2])
    verdict = verify(bad)
    assert not verdict.ok and verdict.first_bad == 2 and "removed or reordered" in verdict.message
    assert not verify(path, anchor=(9, "x")).ok
    assert not verify(path, anchor=(2, "0" * 64)).ok
    assert verify(path, anchor=(2, records[1]["hash"])).ok


def test_an_unreachable_api_server_is_a_clean_error_after_retries() -> None:
    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:1"  # nothing listens on port 1
    configuration.verify_ssl = False
    cluster = Cluster(k8s.ApiClient(configuration), retries=2, backoff=0.001)
    with pytest.raises(ClusterError, match=r"cannot reach the API server at https://127\.0\.0\.1:1") as info:
        cluster.request("GET", "/api/v1/namespaces")
    assert info.value.status == 0
    assert cluster.requests["GET"] == 3  # the first try and two retries


def test_a_large_inventory_is_stored_compressed_and_reads_back() -> None:
    from agent.cluster import Entry, Inventory
    from agent.cluster._inventory import _COMPRESS_OVER

    inventory = Inventory(target="big")
    for i in range(6000):
        entry = Entry("apps/v1", "Deployment", f"team-{i % 10:02d}", f"model-{i:05d}", f"{i:016x}")
        inventory.entries[entry.key] = entry
    body = inventory.to_configmap()
    assert "data" not in body and len(body["binaryData"]["objects.json.gz"]) < _COMPRESS_OVER
    assert Inventory.from_configmap("big", body).entries == inventory.entries
    small = Inventory(target="small", entries=dict(list(inventory.entries.items())[:10]))
    assert Inventory.from_configmap("small", small.to_configmap()).entries == small.entries
    assert "objects" in small.to_configmap()["data"]
