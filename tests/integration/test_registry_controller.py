"""Issue #12, the controller's side, against a real MLflow server, the local control plane and
(for proposals) the real Gitea:

- a commit that serves `@champion` follows the alias: moving it in MLflow changes the served
  storageUri within a few registry ticks, with the commit unchanged, and is audited; an alias
  moved to a version whose run misses the gate is refused and the served version stays;
- a commit that *pins* a version and a controller run with `registry_sync_alias`: a moved alias
  becomes exactly one promotion PR on Gitea (never a deploy: the cluster keeps serving the
  pinned version), and later ticks open no second PR and push no new commit.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import Cluster
from agent.controller import RunConfig
from agent.source import Credentials
from devenv.cluster import ForgeInfo, MlflowInfo
from tests.integration import _mlflow as ml
from tests.integration._forge_repos import (
    alias_repo,
    branches,
    git,
    hosted_repo,
    open_pulls,
    registered,
    registered_runs,
)
from tests.integration.conftest import audit_records, running

pytestmark = pytest.mark.integration


def storage_uri(kubeconfig: Path, namespace: str) -> Any:
    with Cluster.connect(str(kubeconfig)) as cluster:
        obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", namespace)
    return None if obj is None else obj["spec"]["predictor"]["model"]["storageUri"]


def test_the_controller_follows_a_moved_alias_and_refuses_one_that_misses_a_gate(
        tmp_path: Path, mlflow: MlflowInfo, kubeconfig: Path, wait_for: Callable[..., None]) -> None:
    name, runs, versions = registered_runs(mlflow, (0.95, 0.97))
    ns = f"regc-{uuid.uuid4().hex[:6]}"
    work = alias_repo(tmp_path / "repo", mlflow.url, name, gate=0.9, namespace=ns, target=ns)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    audit = tmp_path / "audit.jsonl"
    config = RunConfig(repo=f"file://{bare}", interval=600.0, resync=600.0, kubeconfig=str(kubeconfig),
                       http_addr=None, cache_dir=tmp_path / "mirrors", audit_log=audit, registry_interval=0.5)
    with running(config) as controller:
        wait_for(lambda: storage_uri(kubeconfig, ns) == ml.stored(mlflow.url, runs[0]), "the first apply", timeout=60)
        commit = controller.commit
        ml.set_alias(mlflow.url, name, "champion", versions[1])
        wait_for(lambda: storage_uri(kubeconfig, ns) == ml.stored(mlflow.url, runs[1]), "the moved alias served",
                 timeout=60)
        assert controller.commit == commit  # no new commit: the alias moved, the commit chose to follow it
        moved = audit_records(audit, "registry-moved")
        assert moved and f"1 -> 2 ({ml.stored(mlflow.url, runs[1])})" in moved[-1]["moved"][0], moved

        # a version whose training run missed the gate: refused, the served version stays
        exp = ml.experiment(mlflow.url, f"exp-bad-{name}")
        bad_run = ml.run(mlflow.url, exp, {"auc": [0.5]})
        bad = ml.model_version(mlflow.url, name, f"runs:/{bad_run}/model", bad_run)
        ml.set_alias(mlflow.url, name, "champion", bad)
        wait_for(lambda: "auc=0.5" in controller.registry_error, "the refused gate", timeout=30)
        assert bad_run in controller.registry_error
        assert storage_uri(kubeconfig, ns) == ml.stored(mlflow.url, runs[1])
        assert audit_records(audit, "registry-refused")
        # more ticks on the same refused version (two whole ticks after the first refusal was
        # seen, on the one registry thread): recorded once, not per tick
        checks = controller.registry.checks
        wait_for(lambda: controller.registry.checks >= checks + 3, "two more registry ticks", timeout=30)
        assert len(audit_records(audit, "registry-refused")) == 1
        events = controller.metrics.registry
        assert events.get_sample_value("modelops_agent_registry_events_total", {"kind": "moved"}) == 1
        assert events.get_sample_value("modelops_agent_registry_events_total", {"kind": "refused"}) == 1


def test_the_controller_proposes_a_moved_alias_as_one_pr_and_deploys_nothing(
        tmp_path: Path, mlflow: MlflowInfo, gitea: ForgeInfo, kubeconfig: Path,
        wait_for: Callable[..., None]) -> None:
    registered_name, versions = registered(mlflow, [0.95, 0.96])
    ns = f"regs-{uuid.uuid4().hex[:6]}"
    work, name = hosted_repo(tmp_path, gitea, mlflow, registered_name, namespace=ns)
    url = git(work, gitea, "remote", "get-url", "origin").strip()
    audit = tmp_path / "audit.jsonl"
    config = RunConfig(repo=url, interval=600.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                       cache_dir=tmp_path / "mirrors", audit_log=audit, registry_interval=0.5,
                       registry_sync_alias="champion", forge="gitea",
                       credentials=Credentials(token_file=gitea.token_file, ca_file=gitea.ca_file))
    first = ml.call(mlflow.url, "GET", f"/model-versions/get?name={registered_name}&version=1")["model_version"]
    version1 = ml.stored(mlflow.url, first["run_id"])
    with running(config) as controller:
        wait_for(lambda: storage_uri(kubeconfig, ns) == version1, "the pinned version applied", timeout=60)
        assert open_pulls(gitea, name) == []  # champion names the pinned version: nothing to propose
        ml.set_alias(mlflow.url, registered_name, "champion", versions[1])
        branch = f"registry/{ns}-scorer-2"
        wait_for(lambda: branch in branches(gitea, name), "the proposal branch", timeout=60)
        wait_for(lambda: len(open_pulls(gitea, name)) == 1, "the proposal PR", timeout=30)
        tip = branches(gitea, name)[branch]
        pulls = open_pulls(gitea, name)
        assert pulls[0]["head"]["ref"] == branch and pulls[0]["base"]["ref"] == "main"
        assert "scorer" in pulls[0]["title"]
        # the PR is opened before its audit record is written: wait for the record
        wait_for(lambda: [r for r in audit_records(audit, "registry-proposal") if "error" not in r],
                 "the proposal's audit record", timeout=15)
        proposals = [r for r in audit_records(audit, "registry-proposal") if "error" not in r]
        assert len(proposals) == 1 and proposals[0]["to"] == "2" and proposals[0]["from"] == "1", proposals
        assert proposals[0]["pull_request"] == pulls[0]["html_url"]
        # Two whole registry ticks more: one that deployed or proposed again would have done so
        # before the next began (looks counts the ticks' looks at the sync alias).
        looks = controller.registry.looks
        wait_for(lambda: controller.registry.looks >= looks + 3, "two more registry ticks", timeout=30)
        assert storage_uri(kubeconfig, ns) == version1  # Git still pins 1: nothing deployed behind its back
        assert len(open_pulls(gitea, name)) == 1 and branches(gitea, name)[branch] == tip
    # a restarted controller finds the branch and the PR: no new commit, no second PR
    with running(config):
        wait_for(lambda: len([r for r in audit_records(audit, "registry-proposal") if "error" not in r]) == 2,
                 "the restarted controller's look at the proposal", timeout=60)
        again = [r for r in audit_records(audit, "registry-proposal") if "error" not in r][-1]
        assert again["pushed"] is None and again["pull_request"] == pulls[0]["html_url"]
        assert len(open_pulls(gitea, name)) == 1 and branches(gitea, name)[branch] == tip
        assert not [r for r in audit_records(audit, "registry-proposal") if "error" in r]
