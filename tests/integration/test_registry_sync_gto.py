"""`agent registry sync` (issue #12) for GTO, end to end, no mocks: the model repo itself holds
GTO's annotated tags (`scorer@v1.0.0`, `scorer@v1.1.0`, stage assignments `scorer#prod#N`) and
its `artifacts.yaml`, and is hosted on the real Gitea (HTTPS, its own CA, a token), tags
included. The model pins `registry: {gto: {name: scorer, version: v1.0.0}}` as stable.

- prod assigned to v1.1.0: syncing a fresh clone (tags from the forge) opens ONE PR whose
  branch adds the entry pinning v1.1.0 and makes it the 10% canary, every other byte of the
  file kept; syncing again makes no commit and finds the same PR ("already proposed");
- prod still at v1.0.0: `up to date`, exit 0, nothing pushed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from devenv.cluster import ForgeInfo, forge_create_repo
from tests.integration._forge_repos import branches, git, open_pulls, raw_file

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")
API = "modelops.dev/v1alpha1"
MODEL = "models/scorer.yaml"
BRANCH = "registry/reg-scorer-v1.1.0"  # <prefix><namespace>-<model>-<the version the stage names>

# Byte-preservation bait: comments, a blank line, a quoted/plain mix and the flow-style reference.
PINNED = f"""\
# GTO pins: `agent registry sync --alias prod` proposes the version prod moves to.
apiVersion: {API}
kind: Model
metadata:
  name: scorer
  namespace: reg
spec:
  format: sklearn
  runtime: sklearn-server   # the runtime below
  backend: kserve
  replicas: 1

  versions:
    - version: v1.0.0   # registered by `gto register scorer`
      registry: {{gto: {{name: scorer, version: v1.0.0}}}}
  stable: v1.0.0
  gates: []
"""
ENTRY = "    - version: v1.1.0\n      registry: {gto: {name: scorer, version: v1.1.0}}\n"
CANARY = "  canary:\n    version: v1.1.0\n    traffic: 10\n"


def artifacts(version: str) -> str:
    """GTO's (< 0.3) annotation file, as `gto annotate scorer --type model --path …` writes it."""
    return yaml.safe_dump({"scorer": {"type": "model", "path": f"s3://models/scorer/{version}/"}}, sort_keys=False)


def tag(work: Path, info: ForgeInfo, name: str, message: str) -> None:
    """An annotated tag on HEAD, as GTO makes them (`git tag -a` with its message)."""
    git(work, info, "tag", "-a", name, "-m", message)


def hosted_gto_repo(tmp_path: Path, info: ForgeInfo, *, moved: bool) -> tuple[Path, str]:
    """A model repo pinning GTO scorer@v1.0.0 as stable, its tags registering v1.0.0 (prod#1)
    and, when `moved`, v1.1.0 at a later commit (prod#2), pushed with its tags to a new Gitea repo."""
    name = f"gto-sync-{uuid.uuid4().hex[:8]}"
    work = tmp_path / name
    work.mkdir()
    docs = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": ["reg"]}, "exclude": ["artifacts.yaml"]}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"]}}],
    }
    for rel, content in docs.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    (work / MODEL).parent.mkdir()
    (work / MODEL).write_text(PINNED)
    (work / "artifacts.yaml").write_text(artifacts("1.0.0"))
    url = forge_create_repo(info, name)
    git(work, info, "init", "-q", "-b", "main")
    git(work, info, "config", "user.name", "registry-sync-test")
    git(work, info, "config", "user.email", "sync@test.invalid")
    git(work, info, "add", "-A")
    git(work, info, "commit", "-qm", "scorer v1.0.0, pinned as stable")
    tag(work, info, "scorer@v1.0.0", "Registering artifact scorer version v1.0.0")
    tag(work, info, "scorer#prod#1", "Assigning stage prod to artifact scorer version v1.0.0")
    if moved:
        (work / "artifacts.yaml").write_text(artifacts("1.1.0"))
        git(work, info, "commit", "-qam", "scorer v1.1.0 (retrained)")
        tag(work, info, "scorer@v1.1.0", "Registering artifact scorer version v1.1.0")
        tag(work, info, "scorer#prod#2", "Assigning stage prod to artifact scorer version v1.1.0")
    git(work, info, "remote", "add", "origin", url)
    git(work, info, "push", "-q", "origin", "main", "--tags")
    deadline = time.monotonic() + 10
    while "main" not in branches(info, name):
        assert time.monotonic() < deadline, f"{name}: main never appeared on the forge"
        time.sleep(0.1)
    return work, name


def clone(tmp_path: Path, info: ForgeInfo, name: str) -> Path:
    """A fresh checkout of the hosted repo (as CI makes it): the GTO tags come from the forge."""
    url = f"{info.url.rstrip('/')}/{info.admin_user}/{name}.git"
    dest = tmp_path / f"clone-{name}"
    subprocess.run(["git", "clone", "-q", url, str(dest)], env=info.git_env(), check=True, capture_output=True,
                   timeout=60)
    return dest


def sync(info: ForgeInfo, work: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return subprocess.run([AGENT, "registry", "sync", str(work), "--alias", "prod", "--open-pr", "--forge", "gitea",
                           "--api-url", info.api_url, "--token-file", str(info.token_file),
                           "--ca-file", str(info.ca_file)],
                          env=env, capture_output=True, text=True, timeout=180)


def test_moved_stage_becomes_one_pr(tmp_path: Path, gitea: ForgeInfo) -> None:
    _, name = hosted_gto_repo(tmp_path, gitea, moved=True)
    checkout = clone(tmp_path, gitea, name)
    assert {"scorer@v1.0.0", "scorer@v1.1.0", "scorer#prod#1", "scorer#prod#2"} <= set(
        git(checkout, gitea, "tag", "--list").split())
    main = git(checkout, gitea, "rev-parse", "HEAD").strip()

    out = sync(gitea, checkout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reg/scorer: gto scorer#prod -> v1.1.0, Git's stable pins v1.0.0" in out.stdout, out.stdout
    assert "opened PR #" in out.stdout, out.stdout
    pulls = open_pulls(gitea, name)
    assert [(p["head"]["ref"], p["base"]["ref"]) for p in pulls] == [(BRANCH, "main")]
    number, body = pulls[0]["number"], pulls[0]["body"]
    # the body: the plan of the PR (each version's URI from artifacts.yaml at its tag's commit), then the trailers
    assert "### Model changes `main` → `registry/reg-scorer-v1.1.0`" in body, body
    assert "canary version none -&gt; v1.1.0<br>canary 0% -&gt; 10%" in body, body
    assert "-      storageUri: s3://models/scorer/1.0.0/\n+      storageUri: s3://models/scorer/1.1.0/" in body, body
    assert "Registry: gto scorer#prod -> v1.1.0" in body and "agent registry sync --open-pr" in body, body

    # the branch: one commit on main, only the model file changed, and in it only the entry and the canary
    expected = PINNED.replace("  stable: v1.0.0\n", ENTRY + "  stable: v1.0.0\n" + CANARY)
    assert expected != PINNED
    assert raw_file(gitea, name, MODEL, BRANCH) == expected
    tip = branches(gitea, name)[BRANCH]
    git(checkout, gitea, "fetch", "-q", "origin", BRANCH)
    assert git(checkout, gitea, "rev-parse", "FETCH_HEAD^").strip() == main
    assert git(checkout, gitea, "diff", "--name-only", main, "FETCH_HEAD").split() == [MODEL]
    assert git(checkout, gitea, "show", f"FETCH_HEAD:{MODEL}") == expected
    assert "Registry: gto scorer#prod -> v1.1.0" in git(checkout, gitea, "log", "-1", "--format=%B", "FETCH_HEAD")
    # main and the checkout untouched
    assert raw_file(gitea, name, MODEL, "main") == PINNED == (checkout / MODEL).read_text()
    assert git(checkout, gitea, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(checkout, gitea, "status", "--porcelain") == ""

    again = sync(gitea, checkout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already proposed: PR #{number}" in again.stdout, again.stdout
    assert "committed" not in again.stdout, again.stdout
    assert branches(gitea, name)[BRANCH] == tip
    assert [p["number"] for p in open_pulls(gitea, name)] == [number]

    git(checkout, gitea, "branch", "-D", BRANCH)  # no local branch (another fresh clone): found on the remote
    again = sync(gitea, checkout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already proposed: PR #{number}" in again.stdout, again.stdout
    assert branches(gitea, name)[BRANCH] == tip
    assert [p["number"] for p in open_pulls(gitea, name)] == [number]


def test_stage_at_stable_version_is_up_to_date(tmp_path: Path, gitea: ForgeInfo) -> None:
    work, name = hosted_gto_repo(tmp_path, gitea, moved=False)

    out = sync(gitea, work)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reg/scorer: up to date (gto scorer#prod is v1.0.0" in out.stdout, out.stdout
    assert list(branches(gitea, name)) == ["main"]
    assert not open_pulls(gitea, name)
    assert git(work, gitea, "branch", "--list").split() == ["*", "main"]
