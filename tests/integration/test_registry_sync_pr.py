"""`agent registry sync` (issue #12) end to end, no mocks: a real MLflow server holds the
registered model (versions whose runs logged auc) and a real Gitea (HTTPS, its own CA, a token)
hosts the model repo, whose model pins MLflow version 1 as stable. Moving `@champion` to
version 2 and syncing opens ONE PR whose branch adds the version entry pinning 2 and makes it
the canary; syncing again opens no second PR and makes no new commit; a version whose run
misses the auc gate is refused with nothing pushed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devenv.cluster import ForgeInfo, MlflowInfo
from tests.integration import _mlflow as ml
from tests.integration._forge_repos import MODEL, branches, git, hosted_repo, open_pulls, raw_file, registered

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")


def sync(info: ForgeInfo, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return subprocess.run([AGENT, "registry", "sync", str(work), "--alias", "champion", *args, "--open-pr",
                           "--forge", "gitea", "--token-file", str(info.token_file), "--ca-file", str(info.ca_file)],
                          env=env, capture_output=True, text=True, timeout=180)


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
