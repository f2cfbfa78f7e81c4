"""What the promotion and registry integration tests share: git with a Gitea's environment;
reads of a Gitea repo's branches, files and open pull requests through its API; registered
models in the real MLflow server; model repos that pin or follow them."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from devenv.cluster import ForgeInfo, MlflowInfo, forge_create_repo
from tests.integration import _mlflow as ml
from tests.integration._repos import GIT

API = "modelops.dev/v1alpha1"
MODEL = "models/scorer.yaml"


def git(repo: Path, info: ForgeInfo, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, env=info.git_env(), check=True, capture_output=True, text=True,
                          timeout=60).stdout


def api_get(info: ForgeInfo, path: str) -> Any:
    request = urllib.request.Request(info.api_url.rstrip("/") + path,
                                     headers={"Authorization": f"token {info.token}"})
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        return json.loads(response.read())


def branches(info: ForgeInfo, name: str) -> dict[str, str]:
    try:
        return {b["name"]: b["commit"]["id"] for b in api_get(info, f"/repos/{info.admin_user}/{name}/branches") or []}
    except urllib.error.HTTPError as err:
        if err.code == 409:  # still "empty" right after a first push
            return {}
        raise


def raw_file(info: ForgeInfo, name: str, path: str, ref: str) -> str:
    url = (f"{info.api_url.rstrip('/')}/repos/{info.admin_user}/{name}/raw/{path}?"
           + urllib.parse.urlencode({"ref": ref}))
    request = urllib.request.Request(url, headers={"Authorization": f"token {info.token}"})
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        return str(response.read().decode())


def open_pulls(info: ForgeInfo, name: str) -> list[dict[str, Any]]:
    return list(api_get(info, f"/repos/{info.admin_user}/{name}/pulls?state=open") or [])


def registered_runs(mlflow: MlflowInfo, aucs: Sequence[float]) -> tuple[str, list[str], list[str]]:
    """A registered model with one version per finished run (metric auc), champion -> version 1:
    (its name, the run ids, the versions)."""
    name = f"scorer-{uuid.uuid4().hex[:8]}"
    exp = ml.experiment(mlflow.url, f"exp-{name}")
    runs = [ml.run(mlflow.url, exp, {"auc": [auc]}) for auc in aucs]
    ml.registered_model(mlflow.url, name)
    versions = [ml.model_version(mlflow.url, name, f"runs:/{r}/model", r) for r in runs]
    ml.set_alias(mlflow.url, name, "champion", versions[0])
    return name, runs, versions


def registered(mlflow: MlflowInfo, aucs: Sequence[float]) -> tuple[str, list[str]]:
    """registered_runs without the run ids: (name, versions)."""
    name, _runs, versions = registered_runs(mlflow, aucs)
    return name, versions


def hosted_repo(tmp_path: Path, info: ForgeInfo, mlflow: MlflowInfo, registered_name: str,
                namespace: str = "reg") -> tuple[Path, str]:
    """A model repo (target = the Gitea repo's name) pinning MLflow version 1 as stable (gate
    auc >= 0.9) in `namespace`, pushed to a new Gitea repo. A namespace other than "reg" is
    declared in the repo too (a test that applies it owns it)."""
    name = f"sync-{uuid.uuid4().hex[:8]}"
    work = tmp_path / name
    work.mkdir()
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [namespace]},
                                "registries": {"mlflow": {"trackingUri": mlflow.url}}}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"]}}],
    }
    if namespace != "reg":
        docs["infra/namespace.yaml"] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for rel, content in docs.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    (work / MODEL).parent.mkdir()
    (work / MODEL).write_text(f"""\
# Pinned MLflow versions: `agent registry sync --alias champion` proposes the next one.
apiVersion: {API}
kind: Model
metadata:
  name: scorer
  namespace: {namespace}
spec:
  format: sklearn
  runtime: sklearn-server
  backend: kserve
  replicas: 1
  versions:
    - version: "1"
      registry:
        mlflow:
          name: {registered_name}
          version: "1"
  stable: "1"   # what serves
  gates:
    - metric: auc
      min: 0.9
""")
    url = forge_create_repo(info, name)
    git(work, info, "init", "-q", "-b", "main")
    git(work, info, "config", "user.name", "registry-sync-test")
    git(work, info, "config", "user.email", "sync@test.invalid")
    git(work, info, "add", "-A")
    git(work, info, "commit", "-qm", "pin scorer 1")
    git(work, info, "remote", "add", "origin", url)
    git(work, info, "push", "-q", "origin", "main")
    deadline = time.monotonic() + 10
    while "main" not in branches(info, name):
        assert time.monotonic() < deadline, f"{name}: main never appeared on the forge"
        time.sleep(0.1)
    return work, name


def alias_repo(root: Path, tracking_uri: str, registered_name: str, *, gate: float | None = None,
         namespace: str = "reg", target: str = "reg-test") -> Path:
    """A model repo whose one model serves `@champion` of the registered model (in `namespace`,
    as target `target`)."""
    root.mkdir(parents=True)
    spec: dict[str, Any] = {
        "format": "sklearn", "runtime": "sklearn-server", "backend": "kserve", "replicas": 1,
        "versions": [{"version": "champion", "registry": {"mlflow": {"name": registered_name, "alias": "champion"}}}],
        "stable": "champion",
    }
    if gate is not None:
        spec["gates"] = [{"metric": "auc", "min": gate}]
    docs = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": target},
                       "spec": {"policy": {"allowedNamespaces": [namespace]},
                                "registries": {"mlflow": {"trackingUri": tracking_uri}}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"]}}],
        "models/scorer.yaml": [{"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": namespace},
                                "spec": spec}],
    }
    for rel, content in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "serve @champion"], cwd=root, check=True)
    return root


def scoped_token(info: ForgeInfo, scopes: Sequence[str], path: Path) -> Path:
    """A new API token of the forge's admin with only `scopes` (e.g. read:repository), written to
    `path` (mode 0600): what a least-privilege agent is given."""
    import base64

    basic = base64.b64encode(f"{info.admin_user}:{info.admin_password}".encode()).decode()
    body = json.dumps({"name": f"scoped-{uuid.uuid4().hex[:8]}", "scopes": list(scopes)}).encode()
    request = urllib.request.Request(f"{info.api_url.rstrip('/')}/users/{info.admin_user}/tokens", data=body,
                                     method="POST", headers={"Authorization": f"Basic {basic}",
                                                             "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with urllib.request.urlopen(request, timeout=20, context=context) as response:
        token = json.loads(response.read())["sha1"]
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path
