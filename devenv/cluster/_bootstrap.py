"""What `up` asks of a fresh apiserver before calling it ready.

A dev cluster is only useful if workloads really schedule and run, and the CRDs the agent
renders really validate; so `up` proves both instead of trusting the processes started.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import yaml

from devenv.cluster._api import Api, ApiError, Json
from devenv.cluster._components import KWOK_ANNOTATION, KWOK_ANNOTATION_VALUE
from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc, exit_status, log_tail, running

NODE_NAME = "kwok-node-0"
# GPUs too, so GPU models schedule on the fake node like on a real GPU pool
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "8"}
CHECK_NAMESPACE = "devcluster-check"
CHECK_APP = "devcluster-check"
FIELD_MANAGER = "agent-devcluster"
_CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class ComponentExited(DevclusterError):
    """A process of the cluster ended while `up` waited for it."""


class Waiter:
    """Polls a condition until a deadline, failing early if a process it depends on died."""

    def __init__(self, deadline: float, processes: Callable[[], list[Proc]]) -> None:
        self.deadline = deadline
        self.processes = processes

    def until(self, what: str, check: Callable[[], bool], interval: float = 0.2) -> None:
        last: Exception | None = None
        while True:
            try:
                if check():
                    return
            except (OSError, ApiError) as err:  # not up yet, or a transient answer
                last = err
            for proc in self.processes():
                if not running(proc):
                    status = exit_status(proc)
                    raise ComponentExited(
                        f"{proc.name} exited{f' ({status})' if status else ''} while waiting for {what}; "
                        f"{proc.log} ends:\n" + log_tail(proc)
                    )
            if time.monotonic() > self.deadline:
                detail = f" (last error: {last})" if last else ""
                raise DevclusterError(f"timed out waiting for {what}{detail}")
            time.sleep(interval)


def create_node(api: Api) -> None:
    """The fake node kwok manages: untainted, schedulable, roomy."""
    node: Json = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": NODE_NAME,
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY},
    }
    api.create("/api/v1/nodes", node)


def node_ready(api: Api) -> bool:
    """Ready=True and no scheduling taint left (the node controller removes not-ready)."""
    node = api.get(f"/api/v1/nodes/{NODE_NAME}")
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = [t for t in node.get("spec", {}).get("taints", []) if t["effect"] in ("NoSchedule", "NoExecute")]
    return ready and not taints and not node.get("spec", {}).get("unschedulable", False)


def create_check_namespace(api: Api) -> None:
    api.apply(
        f"/api/v1/namespaces/{CHECK_NAMESPACE}",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHECK_NAMESPACE}},
        FIELD_MANAGER,
    )


def default_service_account(api: Api) -> bool:
    """The ServiceAccount admission plugin rejects pods until this exists."""
    api.get(f"/api/v1/namespaces/{CHECK_NAMESPACE}/serviceaccounts/default")
    return True


def create_check_deployment(api: Api) -> None:
    labels = {"app": CHECK_APP}
    deployment: Json = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CHECK_APP, "namespace": CHECK_NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    path = f"/apis/apps/v1/namespaces/{CHECK_NAMESPACE}/deployments/{CHECK_APP}"
    api.apply(path, deployment, FIELD_MANAGER)


def check_deployment_available(api: Api) -> bool:
    """Available, and its pods Running on the kwok node (so scheduler and kwok work)."""
    deployment = api.get(f"/apis/apps/v1/namespaces/{CHECK_NAMESPACE}/deployments/{CHECK_APP}")
    conditions = deployment.get("status", {}).get("conditions") or []
    if not any(c["type"] == "Available" and c["status"] == "True" for c in conditions):
        return False
    if deployment["status"].get("availableReplicas", 0) < deployment["spec"]["replicas"]:
        return False
    selector = urllib.parse.quote(f"app={CHECK_APP}")
    pods = api.get(f"/api/v1/namespaces/{CHECK_NAMESPACE}/pods?labelSelector={selector}")
    items = pods.get("items", [])
    return bool(items) and all(
        p["status"].get("phase") == "Running" and p["spec"].get("nodeName") == NODE_NAME for p in items
    )


def apply_crds(api: Api, crds_dir: Path) -> list[str]:
    """Server-side apply every CRD in crds_dir/*.yaml; their names."""
    names: list[str] = []
    for path in sorted(crds_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = str(doc["metadata"]["name"])
            api.apply(f"{_CRDS}/{name}", doc, FIELD_MANAGER)
            names.append(name)
    if not names:
        raise DevclusterError(f"no CustomResourceDefinition found in {crds_dir}/*.yaml")
    return names


def openapi_published(api: Api, group_versions: list[str]) -> bool:
    """Whether the apiserver's OpenAPI v3 lists these group/versions yet: kwok reads the
    schema of each kind its Stages name when it starts, a moment after the CRD is Established."""
    paths = api.get("/openapi/v3").get("paths") or {}
    return all(f"apis/{gv}" in paths for gv in group_versions)


def crds_established(api: Api, names: list[str]) -> bool:
    for name in names:
        crd = api.get(f"{_CRDS}/{name}")
        conditions = crd.get("status", {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return False
    return True
