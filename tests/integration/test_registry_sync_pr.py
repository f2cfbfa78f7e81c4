"""`agent registry sync` (issue #12) end to end, no mocks: a real MLflow server holds the
registered model (versions whose runs logged auc) and a real Gitea (HTTPS, its own CA, a token)
hosts the model repo, whose model pins MLflow version 1 as stable. Moving `@champion` to
version 2 and syncing opens ONE PR whose branch adds the version entry pinning 2 and makes it
the canary; syncing again opens no second PR and makes no new commit; a version whose run
misses the auc gate is refused with nothing pushed."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.devcluster import ForgeInfo, MlflowInfo, forge_create_repo
from tests.integration import _mlflow as ml
from tests.integration._repos import GIT

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")
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


def registered(mlflow: MlflowInfo, aucs: list[float]) -> tuple[str, list[str]]:
    """A registered model with one version per run (metric auc); champion -> version 1."""
    name = f"scorer-{uuid.uuid4().hex[:8]}"
    exp = ml.experiment(mlflow.url, f"exp-{name}")
    runs = [ml.run(mlflow.url, exp, {"auc": [auc]}) for auc in aucs]
    ml.registered_model(mlflow.url, name)
    versions = [ml.model_version(mlflow.url, name, f"runs:/{r}/model", r) for r in runs]
    ml.set_alias(mlflow.url, name, "champion", versions[0])
    return name, versions


def hosted_repo(tmp_path: Path, info: ForgeInfo, mlflow: MlflowInfo, registered_name: str) -> tuple[Path, str]:
    """A model repo pinning MLflow version 1 as stable (gate auc >= 0.9), pushed to a new Gitea repo."""
    name = f"sync-{uuid.uuid4().hex[:8]}"
    work = tmp_path / name
    work.mkdir()
    docs = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": ["reg"]},
                                "registries": {"mlflow": {"trackingUri": mlflow.url}}}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"]}}],
    }
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
  namespace: reg
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


def sync(info: ForgeInfo, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return subprocess.run([AGENT, "registry", "sync", str(work), "--alias", "champion", *args, "--open-pr",
                           "--forge", "gitea", "--token-file", str(info.token_file), "--ca-file", str(info.ca_file)],
                          env=env, capture_output=True, text=True, timeout=180)


def open_pulls(info: ForgeInfo, name: str) -> list[dict[str, Any]]:
    return list(api_get(info, f"/repos/{info.admin_user}/{name}/pulls?state=open") or [])


def test_moved_alias_becomes_one_pr(tmp_path: Path, mlflow: MlflowInfo, gitea: ForgeInfo) -> None:
    registered_name, versions = registered(mlflow, [0.95, 0.96, 0.80])
    assert versions == ["1", "2", "3"]
    work, name = hosted_repo(tmp_path, gitea, mlflow, registered_name)

    out = sync(gitea, work)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout and not open_pulls(gitea, name)

    ml.set_alias(mlflow.url, registered_name, "champion", "2")
    out = sync(gitea, work)
    assert out.returncode == 0, out.stderr
    assert "opened PR #" in out.stdout, out.stdout
    branch = "registry/reg-scorer-2"
    pulls = open_pulls(gitea, name)
    assert [(p["head"]["ref"], p["base"]["ref"]) for p in pulls] == [(branch, "main")]
    assert "Registry: mlflow" in pulls[0]["body"] and "agent registry sync --open-pr" in pulls[0]["body"]
    text = raw_file(gitea, name, MODEL, branch)
    assert (f'    - version: "2"\n      registry:\n        mlflow:\n          name: {registered_name}\n'
            f'          version: "2"\n  stable: "1"   # what serves\n  canary:\n    version: "2"\n'
            "    traffic: 10\n") in text
    assert raw_file(gitea, name, MODEL, "main") == (work / MODEL).read_text()  # main and the work tree untouched
    assert git(work, gitea, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    tip = branches(gitea, name)[branch]

    again = sync(gitea, work)
    assert again.returncode == 0, again.stderr
    assert f"already proposed: PR #{pulls[0]['number']}" in again.stdout, again.stdout
    assert branches(gitea, name)[branch] == tip
    assert [p["number"] for p in open_pulls(gitea, name)] == [pulls[0]["number"]]

    # a fresh clone (no local branch): still no new commit, the same PR
    git(work, gitea, "branch", "-D", branch)
    again = sync(gitea, work)
    assert again.returncode == 0, again.stderr
    assert "already proposed" in again.stdout and branches(gitea, name)[branch] == tip

    ml.set_alias(mlflow.url, registered_name, "champion", "3")  # auc 0.80 misses the gate
    refused = sync(gitea, work)
    assert refused.returncode == 2, refused.stdout
    assert "promotion gate" in refused.stderr and "0.8" in refused.stderr, refused.stderr
    assert "registry/reg-scorer-3" not in branches(gitea, name)
    assert "registry/reg-scorer-3" not in git(work, gitea, "branch", "--list")
    assert len(open_pulls(gitea, name)) == 1
