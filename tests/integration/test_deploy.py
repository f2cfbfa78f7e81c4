"""Issue #8's install on the real control plane: deploy/overlays/example applies and its
Deployment becomes Available (on the kwok node: no container really runs), and the agent,
authenticated as the overlay's ServiceAccount, applies a copy of the example repo where the
RBAC grants it and is refused (exit 2, the API server's 403) where it does not; `agent run`
(watches, leader election) syncs with the same identity. Nothing grants a read across all
namespaces: the agent lists and watches per managed namespace.

Other tests share this cluster: the example repo's target `ml-platform` and its namespaces
`fraud`/`recsys` belong to test_reconcile. So the copy applied here is renamed (target
`deploy-test`, namespaces `dep-*`), it is granted by a test-specific set of RoleBindings like the
overlay's, and everything created here is deleted (and waited for) at the end.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration._repos import renamed_example

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "overlays" / "example"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
SYSTEM = "modelops-system"
SA = "modelops-agent"
TARGET = "deploy-test"
RENAMED = {"fraud": "dep-fraud", "recsys": "dep-recsys"}
DENIED = "dep-denied"  # allowed by the repo's policy, not granted by any RoleBinding


def kubectl(kubeconfig: Path | None, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [KUBECTL, *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=180)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
    return proc


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=300)


def namespace_exists(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except client.ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def namespaces_gone(core: client.CoreV1Api, names: set[str]) -> bool:
    return not any(namespace_exists(core, n) for n in names)


def deployment_available(apps: client.AppsV1Api) -> bool:
    dep = apps.read_namespaced_deployment(SA, SYSTEM)
    conditions = {c.type: c.status for c in dep.status.conditions or []}
    return conditions.get("Available") == "True" and (dep.status.available_replicas or 0) == dep.spec.replicas


@pytest.fixture(scope="module")
def installed(kubeconfig: Path, api_client: client.ApiClient, wait_for: Any) -> Iterator[list[dict[str, Any]]]:
    """The example overlay, server-side applied; deleted again at the end (`kubectl delete -k`,
    minus the Namespaces that existed before: modelops-system holds other tests' inventories and
    Leases, and fraud/recsys are test_reconcile's if it ran first)."""
    rendered = kubectl(None, "kustomize", str(OVERLAY)).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    core = client.CoreV1Api(api_client)
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    existed = {n for n in namespaces if namespace_exists(core, n)}
    try:
        kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=rendered)
        yield docs
    finally:
        keep = [d for d in docs if not (d["kind"] == "Namespace" and d["metadata"]["name"] in existed)]
        kubectl(kubeconfig, "delete", "--ignore-not-found", "--wait=true", "-f", "-",
                stdin=yaml.safe_dump_all(keep), check=False)
        # a namespace that stays loses what our apply added to it (the Pod Security labels): the
        # same field manager applying the bare Namespace gives those fields up
        bare = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted(existed)]
        if bare:
            kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(bare), check=False)
        # a namespace still terminating would refuse the next test's objects in it
        wait_for(lambda: namespaces_gone(core, namespaces - existed), "the overlay's namespaces deleted", timeout=180)


def test_overlay_renders_the_install(installed: list[dict[str, Any]], tmp_path: Path) -> None:
    base = [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(ROOT / "deploy")).stdout) if d]
    assert {d["kind"] for d in base} >= {"Namespace", "Deployment", "ClusterRole"}  # `kubectl kustomize deploy/` too
    assert not any(d["kind"] == "RoleBinding" and d["metadata"]["namespace"] != SYSTEM for d in base)
    kinds = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in installed}
    assert {("Namespace", "", SYSTEM), ("ServiceAccount", SYSTEM, SA), ("Deployment", SYSTEM, SA),
            ("Service", SYSTEM, SA), ("NetworkPolicy", SYSTEM, SA), ("ServiceMonitor", SYSTEM, SA),
            ("RoleBinding", "fraud", SA), ("RoleBinding", "recsys", SA)} <= kinds
    cluster_wide = {d["metadata"]["name"] for d in installed if d["kind"] == "ClusterRole"}
    assert cluster_wide == {"modelops-agent-namespace", "modelops-agent-namespaces"}
    # cluster-wide: Namespaces only (no delete); every other kind only where a RoleBinding binds
    # the template, so no cluster-wide read of Secrets & co. (the agent lists per namespace)
    bound = {d["roleRef"]["name"] for d in installed if d["kind"] == "ClusterRoleBinding"}
    assert bound == {"modelops-agent-namespaces"}
    (namespaces,) = (d for d in installed if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "modelops-agent-namespaces")
    for rule in namespaces["rules"]:
        assert rule["resources"] == ["namespaces"] and "delete" not in rule["verbs"], rule

    # the optional component (very large installs) still renders on top of the overlay
    larger_overlay = shutil.copytree(ROOT / "deploy", tmp_path / "deploy") / "overlays" / "larger"
    larger_overlay.mkdir()
    (larger_overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../example"], "components": ["../../components/cluster-list"]}), encoding="utf-8")
    larger = [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(larger_overlay)).stdout) if d]
    (listing,) = (d for d in larger if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "modelops-agent-list")
    assert all(rule["verbs"] == ["list", "watch"] for rule in listing["rules"])

    # the ML-loop component: egress to Prometheus and MLflow, MLflow's token from an optional Secret
    ml_overlay = larger_overlay.parent / "ml"
    ml_overlay.mkdir()
    (ml_overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../example"], "components": ["../../components/ml-loop"]}), encoding="utf-8")
    ml = [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(ml_overlay)).stdout) if d]
    (policy,) = (d for d in ml if d["kind"] == "NetworkPolicy")
    base_policy = next(d for d in installed if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["egress"][:-1] == base_policy["spec"]["egress"]  # the base rules untouched
    assert {p["port"] for p in policy["spec"]["egress"][-1]["ports"]} == {9090, 5000, 80}
    (ml_container,) = next(d for d in ml if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"]
    token = next(e for e in ml_container["env"] if e["name"] == "MLFLOW_TRACKING_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "modelops-agent-mlflow", "key": "token", "optional": True}

    # the SOPS component: the age key file from an optional Secret, named by SOPS_AGE_KEY_FILE
    sops_overlay = larger_overlay.parent / "sops"
    sops_overlay.mkdir()
    (sops_overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../example"], "components": ["../../components/sops-age"]}), encoding="utf-8")
    sops_pod = next(d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(sops_overlay)).stdout)
                    if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (sops_container,) = sops_pod["containers"]
    assert {"name": "SOPS_AGE_KEY_FILE", "value": "/etc/modelops/sops-age/keys.txt"} in sops_container["env"]
    assert {"name": "sops-age", "mountPath": "/etc/modelops/sops-age", "readOnly": True} in sops_container["volumeMounts"]
    (volume,) = (v for v in sops_pod["volumes"] if v["name"] == "sops-age")
    assert volume["secret"] == {"secretName": "modelops-agent-sops-age", "optional": True, "defaultMode": 0o440}

    dep = next(d for d in installed if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["agent"] and container["args"][0] == "run" and "--leader-elect" in container["args"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(v["secret"]["optional"] for v in pod["volumes"] if "secret" in v)


def test_the_verify_signatures_component_renders(tmp_path: Path) -> None:
    """components/verify-signatures: the Secret modelops-agent-signers (required) mounted as a
    file, and AGENT_VERIFY_SIGNATURES naming that file; the rest of the Deployment untouched."""
    overlay = shutil.copytree(ROOT / "deploy", tmp_path / "deploy") / "overlays" / "signed"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../example"], "components": ["../../components/verify-signatures"]}), encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(overlay)).stdout) if d]
    plain = [d for d in yaml.safe_load_all(kubectl(None, "kustomize", str(OVERLAY)).stdout) if d]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    base_pod = next(d for d in plain if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (container,), (base_container,) = pod["containers"], base_pod["containers"]
    (volume,) = (v for v in pod["volumes"] if v["name"] == "signers")
    assert volume["secret"]["secretName"] == "modelops-agent-signers" and volume["secret"]["optional"] is False
    (item,) = volume["secret"]["items"]
    (mount,) = (m for m in container["volumeMounts"] if m["name"] == "signers")
    assert mount["readOnly"] is True
    (env,) = (e for e in container["env"] if e["name"] == "AGENT_VERIFY_SIGNATURES")
    assert env["value"] == f"{mount['mountPath']}/{item['path']}"
    assert pod["volumes"][:-1] == base_pod["volumes"] and container["volumeMounts"][:-1] == base_container["volumeMounts"]
    assert container["env"][:-1] == base_container["env"] and container["args"] == base_container["args"]
    assert [d for d in docs if d["kind"] != "Deployment"] == [d for d in plain if d["kind"] != "Deployment"]


def test_overlay_deployment_becomes_available(installed: list[dict[str, Any]], api_client: client.ApiClient,
                                              wait_for: Any) -> None:
    apps = client.AppsV1Api(api_client)
    wait_for(lambda: deployment_available(apps), "the agent's Deployment Available", timeout=180)
    pods = client.CoreV1Api(api_client).list_namespaced_pod(SYSTEM, label_selector=f"app.kubernetes.io/name={SA}")
    assert len(pods.items) == 2
    assert all(p.spec.service_account_name == SA for p in pods.items)


def renamed_copy(dest: Path) -> Path:
    """examples/model-repo as target `deploy-test` in namespaces dep-fraud/dep-recsys."""
    return renamed_example(dest, TARGET, RENAMED)


def namespace_bindings() -> str:
    """The RBAC an overlay for the renamed repo would carry: the namespace template bound in
    dep-fraud and dep-recsys, and get/update on this target's Lease and inventory (the example
    overlay narrows them to ml-platform's)."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": SA, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "modelops-agent-namespace"},
         "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM}]}
        for ns in RENAMED.values()
    ]
    name = f"{SA}-{TARGET}"
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": SYSTEM},
                 "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
                            "resourceNames": [f"modelops-{TARGET}"]},
                           {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"],
                            "resourceNames": [f"modelops-inventory-{TARGET}", f"modelops-rollouts-{TARGET}"]}]})
    docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": SYSTEM},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                 "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM}]})
    return yaml.safe_dump_all(docs)


@pytest.fixture
def granted(installed: list[dict[str, Any]], kubeconfig: Path, api_client: client.ApiClient,
            wait_for: Any) -> Iterator[None]:
    """Namespaces dep-fraud, dep-recsys (bound) and dep-denied (not bound), created by the admin
    as an installer would; deleted at the end with this target's Lease, inventory and Role."""
    core = client.CoreV1Api(api_client)
    created = {*RENAMED.values(), DENIED}
    for ns in sorted(created):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    bindings = namespace_bindings()
    try:
        kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=bindings)
        yield
    finally:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", "-", stdin=bindings, check=False)
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-n", SYSTEM, f"lease/modelops-{TARGET}",
                f"configmap/modelops-inventory-{TARGET}", check=False)
        for ns in created:
            core.delete_namespace(ns)
        wait_for(lambda: namespaces_gone(core, created), "the test's namespaces deleted", timeout=180)


def service_account_kubeconfig(admin: Path, dest: Path) -> Path:
    """The session cluster's server and CA with a token of the agent's ServiceAccount."""
    token = kubectl(admin, "create", "token", SA, "-n", SYSTEM, "--duration=30m").stdout.strip()
    config = yaml.safe_load(admin.read_text(encoding="utf-8"))
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    dest.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "agent",
        "clusters": [{"name": "devcluster", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "devcluster", "user": SA}}],
    }), encoding="utf-8")
    return dest


def test_agent_applies_with_the_service_account_only_where_granted(
        granted: None, kubeconfig: Path, api_client: client.ApiClient, tmp_path: Path) -> None:
    repo = renamed_copy(tmp_path / "model-repo")
    sa_config = service_account_kubeconfig(kubeconfig, tmp_path / "agent.kubeconfig")
    assert kubectl(sa_config, "auth", "can-i", "patch", "configmaps", "-n", DENIED, check=False).stdout.strip() == "no"
    # least privilege: no read of the managed kinds across all namespaces (the agent lists per namespace)
    for kind in ("secrets", "configmaps", "deployments.apps"):
        assert kubectl(sa_config, "auth", "can-i", "list", kind, "--all-namespaces", check=False).stdout.strip() == "no"

    out = agent("apply", str(repo), "--kubeconfig", str(sa_config), "--color", "never")
    assert out.returncode == 0, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    custom = client.CustomObjectsApi(api_client)
    isvc = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", "dep-fraud", "inferenceservices", "fraud-scorer")
    assert isvc["metadata"]["labels"]["modelops.dev/target"] == TARGET
    assert client.AppsV1Api(api_client).read_namespaced_deployment("ranker", "dep-recsys").metadata.labels[
        "modelops.dev/target"] == TARGET
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_config_map(f"modelops-inventory-{TARGET}", SYSTEM).data
    client.CoordinationV1Api(api_client).read_namespaced_lease(f"modelops-{TARGET}", SYSTEM)
    # reading back what it wrote: a live diff as the ServiceAccount finds nothing to change
    diff = agent("diff", str(repo), "--kubeconfig", str(sa_config), "--color", "never")
    assert diff.returncode == 0, f"stdout:\n{diff.stdout}\nstderr:\n{diff.stderr}"

    # a ConfigMap in a namespace the repo's policy allows but no RoleBinding grants
    config = repo / "repo.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "      - dep-recsys\n", f"      - dep-recsys\n      - {DENIED}\n", 1), encoding="utf-8")
    (repo / "infra" / "denied.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: not-granted
          namespace: {DENIED}
        data:
          reason: no RoleBinding for the agent here
        """), encoding="utf-8")
    assert agent("validate", str(repo)).returncode == 0

    out = agent("apply", str(repo), "--kubeconfig", str(sa_config), "--color", "never")
    assert out.returncode == 2, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    # the API server's 403, verbatim: verb, resource and namespace. Without a cluster-wide read
    # the agent lists ConfigMaps per managed namespace, and dep-denied refuses that LIST: the
    # commit is refused before any write. (Were that LIST allowed, the write would be refused
    # instead, as the object's `failed` line.)
    printed = out.stdout + out.stderr
    refused = re.search(r'cannot (list|patch) resource "configmaps" in API group "" in the namespace "(\S+)"', printed)
    assert refused and refused.group(2) == DENIED, printed
    if refused.group(1) == "patch":
        assert "failed    create  ConfigMap/dep-denied/not-granted" in printed, printed
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_config_map("not-granted", DENIED)
    assert err.value.status == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_controller_syncs_with_the_service_account(
        granted: None, kubeconfig: Path, api_client: client.ApiClient, tmp_path: Path, wait_for: Any) -> None:
    """`agent run --leader-elect` as in the Deployment (on this machine, as the ServiceAccount):
    its LIST + WATCH cache (per managed namespace: the LIST across all namespaces is refused),
    the Lease and the inventory are all within the overlay's RBAC, so it becomes leader and
    Ready (a successful sync) without a single error, and stops cleanly on SIGTERM."""
    repo = renamed_copy(tmp_path / "model-repo")
    git = ["git", "-c", "user.name=Tester", "-c", "user.email=tester@modelops.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "model repo"], cwd=repo, check=True)
    sa_config = service_account_kubeconfig(kubeconfig, tmp_path / "agent.kubeconfig")
    port = free_port()
    log = (tmp_path / "agent-run.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--repo", str(repo), "--branch", "main",
                             "--kubeconfig", str(sa_config), "--leader-elect", "--http-addr", f"127.0.0.1:{port}",
                             "--interval", "5s", "--audit-log", str(tmp_path / "audit.jsonl")],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200 or proc.poll() is not None,
                     "agent run Ready", timeout=180)
        finally:
            log.flush()
        output = (tmp_path / "agent-run.log").read_text(encoding="utf-8")
        assert proc.poll() is None, f"agent run exited {proc.returncode}:\n{output}"
        assert http_status(f"http://127.0.0.1:{port}/readyz") == 200, output
        assert "forbidden" not in output.lower(), output
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(f"modelops-{TARGET}", SYSTEM)
        assert (lease.spec.holder_identity or "").startswith("modelops-agent@"), lease.spec
        isvc = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", "dep-fraud", "inferenceservices", "fraud-scorer")
        assert isvc["metadata"]["labels"]["modelops.dev/target"] == TARGET
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "agent-run.log").read_text(encoding="utf-8")
