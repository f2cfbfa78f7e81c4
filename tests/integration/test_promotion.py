"""Issue #10 end to end, no mocks: a real Gitea (HTTPS, the local CA, a token) hosts the model
repo; `agent promote --open-pr` opens and updates the PR; the PR check keeps one comment with
the plan; the controller follows the repo over HTTPS, Gitea's push webhook reaches `/webhook`,
and the merged PR is applied and audited with its merge commit, author and PR number."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import Cluster
from agent.controller import Controller, RunConfig
from agent.forge import Forge, open_forge, repo_ref
from agent.source import Credentials
from devenv.cluster import ForgeInfo, forge_create_repo
from tests.integration._forge_repos import api_get, branches, git, raw_file
from tests.integration._repos import renamed_example
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AGENT = str(Path(sys.executable).parent / "agent")
DEVENV = str(Path(sys.executable).parent / "devenv")  # `make venv` installs it beside the agent
MODEL = "teams/fraud/models/fraud-scorer.yaml"
SECRET = "gitea-webhook-secret"


def hosted_repo(tmp_path: Path, info: ForgeInfo, name: str) -> tuple[Path, str]:
    """The example repo as target `name` in namespaces `name`-fraud/-recsys, fraud-scorer
    without its canary (12 stable), committed and pushed to a new Gitea repo `name`."""
    work = renamed_example(tmp_path / name, name, {"fraud": f"{name}-fraud", "recsys": f"{name}-recsys"})
    model = work / MODEL
    text = model.read_text()
    text = re.sub(r"\n  canary:\n    version: \"13\"\n    traffic: 10[^\n]*", "", text, count=1)
    assert "  canary:" not in text
    model.write_text(text)
    url = forge_create_repo(info, name)
    git(work, info, "init", "-q", "-b", "main")
    git(work, info, "add", "-A")
    git(work, info, "commit", "-qm", "model repo")
    git(work, info, "remote", "add", "origin", url)
    git(work, info, "push", "-q", "origin", "main")
    deadline = time.monotonic() + 10  # Gitea answers 409 "empty repository" for a moment after the first push
    while "main" not in branches(info, name):
        assert time.monotonic() < deadline, f"{name}: main never appeared on the forge"
        time.sleep(0.1)
    return work, url


def agent(info: ForgeInfo, *args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    # Not git_env: the agent must reach the forge with its own --token-file and --ca-file.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(extra_env or {})}
    return subprocess.run([AGENT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def promote(info: ForgeInfo, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return agent(info, "promote", "fraud-scorer", str(work), *args, "--open-pr", "--forge", "gitea",
                 "--token-file", str(info.token_file), "--ca-file", str(info.ca_file))


@pytest.fixture
def forge_for(gitea: ForgeInfo) -> Iterator[Callable[[str], Forge]]:
    opened: list[Forge] = []

    def make(url: str) -> Forge:
        forge = open_forge(repo_ref(url, "gitea", gitea.api_url), gitea.token, ca_file=gitea.ca_file)
        opened.append(forge)
        return forge

    try:
        yield make
    finally:
        for forge in opened:
            forge.close()


def test_promote_opens_then_updates_one_pr_and_refuses_a_failing_gate(
        tmp_path: Path, gitea: ForgeInfo, forge_for: Callable[[str], Forge]) -> None:
    work, url = hosted_repo(tmp_path, gitea, "promo-pr")
    forge = forge_for(url)
    main_before = git(work, gitea, "ls-remote", "origin", "refs/heads/main").split()[0]

    first = promote(gitea, work, "--canary", "13", "--traffic", "10", "--branch", "promote/fraud-13")
    assert first.returncode == 0, first.stderr
    pr = forge.find_pull("promote/fraud-13", "main")
    assert pr is not None and pr.state == "open"
    assert pr.url in first.stdout
    assert "fraud-scorer" in pr.title and "13" in pr.title and "10%" in pr.title
    assert "InferenceService" in pr.body and "canary" in pr.body  # the Markdown plan of the change
    hosted = raw_file(gitea, "promo-pr", MODEL, "promote/fraud-13")
    assert "# The card-transaction fraud scorer, mid-rollout" in hosted  # comments kept
    assert 'version: "13"' in hosted and "traffic: 10" in hosted
    assert gitea.token not in first.stdout + first.stderr

    again = promote(gitea, work, "--traffic", "20", "--branch", "promote/fraud-13")
    assert again.returncode == 0, again.stderr
    updated = forge.get_pull(pr.number)
    assert updated.number == pr.number and "20%" in updated.title
    assert f"#{pr.number}" in again.stdout and "updated" in again.stdout.lower()
    assert [p for p in (forge.find_pull("promote/fraud-13", "main"),) if p and p.number != pr.number] == []

    git(work, gitea, "switch", "-q", "main")
    refused = promote(gitea, work, "--canary", "11", "--traffic", "10", "--branch", "promote/fraud-11")
    assert refused.returncode == 2
    assert "promotion gate" in refused.stderr and "auc=0.928" in refused.stderr
    assert "promote/fraud-11" not in branches(gitea, "promo-pr")  # nothing pushed
    assert git(work, gitea, "ls-remote", "origin", "refs/heads/main").split()[0] == main_before


def test_pr_check_keeps_one_comment_with_the_plan(tmp_path: Path, gitea: ForgeInfo,
                                                 forge_for: Callable[[str], Forge]) -> None:
    work, url = hosted_repo(tmp_path, gitea, "promo-check")
    forge = forge_for(url)
    git(work, gitea, "switch", "-q", "-c", "raise-replicas")
    model = work / MODEL
    model.write_text(model.read_text().replace("    max: 10\n", "    max: 12\n", 1))
    git(work, gitea, "commit", "-qam", "fraud-scorer: up to 12 replicas")
    git(work, gitea, "push", "-q", "origin", "raise-replicas")
    pr = forge.open_pull("raise-replicas", "main", "fraud-scorer: up to 12 replicas", "scale")

    env = {"AGENT_PR_NUMBER": str(pr.number), "AGENT_PR_BASE": "main", "AGENT_PR_FORGE": "gitea",
           "AGENT_PR_API_URL": gitea.api_url, "AGENT_PR_TOKEN_ENV": "GITEA_TOKEN", "GITEA_TOKEN": gitea.token,
           "AGENT_PR_CA_FILE": str(gitea.ca_file), "AGENT_PR_PATH": ".", "AGENT_PR_OUT": str(tmp_path / "plan.md"),
           "AGENT_BIN": AGENT}
    check = subprocess.run(["bash", str(ROOT / "tools" / "pr-check.sh")], cwd=work, env={**os.environ, **env},
                           capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    comments = api_get(gitea, f"/repos/{gitea.admin_user}/promo-check/issues/{pr.number}/comments")
    assert len(comments) == 1
    first_id, first_body = comments[0]["id"], comments[0]["body"]
    assert "maxReplicas" in first_body or "autoscaling" in first_body

    model.write_text(model.read_text().replace("    max: 12\n", "    max: 14\n", 1))
    git(work, gitea, "commit", "-qam", "fraud-scorer: up to 14 replicas")
    git(work, gitea, "push", "-q", "origin", "raise-replicas")
    check = subprocess.run(["bash", str(ROOT / "tools" / "pr-check.sh")], cwd=work, env={**os.environ, **env},
                           capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    comments = api_get(gitea, f"/repos/{gitea.admin_user}/promo-check/issues/{pr.number}/comments")
    assert [c["id"] for c in comments] == [first_id]  # edited, not re-posted
    assert comments[0]["body"] != first_body and "14" in comments[0]["body"]


def isvc(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any] | None:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), name, namespace)




def test_merged_pr_reaches_the_cluster_by_webhook_and_is_audited(
        tmp_path: Path, gitea: ForgeInfo, kubeconfig: Path, forge_for: Callable[[str], Forge]) -> None:
    work, url = hosted_repo(tmp_path, gitea, "promo-merge")
    forge = forge_for(url)
    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")
    audit = tmp_path / "audit.jsonl"
    # Polling every 10 minutes: only the webhook can make the merge arrive within seconds.
    config = RunConfig(repo=url, interval=600.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr="127.0.0.1:0",
                       webhook_secret_file=secret, cache_dir=tmp_path / "mirrors", audit_log=audit,
                       credentials=Credentials(token_file=gitea.token_file, username=gitea.admin_user,
                                               ca_file=gitea.ca_file))
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: isvc(kubeconfig, "promo-merge-fraud", "fraud-scorer"), "the first apply", 120)
        first = isvc(kubeconfig, "promo-merge-fraud", "fraud-scorer")
        assert first is not None and "canaryTrafficPercent" not in first["spec"]["predictor"]
        assert controller.http is not None
        forge.add_push_webhook(f"{controller.http.url}/webhook", SECRET)

        opened = promote(gitea, work, "--canary", "13", "--traffic", "10", "--branch", "promote/fraud-13")
        assert opened.returncode == 0, opened.stderr
        pr = forge.find_pull("promote/fraud-13", "main")
        assert pr is not None
        merge = forge.merge_pull(pr.number)
        merged_at = time.monotonic()

        def rolled_out() -> bool:
            obj = isvc(kubeconfig, "promo-merge-fraud", "fraud-scorer")
            return obj is not None and obj["spec"]["predictor"].get("canaryTrafficPercent") == 10
        wait_until(rolled_out, "the merged canary in the cluster", 60)
        assert time.monotonic() - merged_at < 30  # seconds, not the 10-minute poll

        def audited() -> dict[str, Any] | None:
            if not audit.exists():
                return None
            records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
            return next((r for r in records if r.get("event") == "reconcile" and r.get("commit") == merge
                         and r.get("result") == "succeeded" and not r.get("dry_run")), None)
        record = wait_until(audited, "the audit record of the merge", 30)
        assert record["pull_request"] == f"#{pr.number}"
        assert gitea.admin_user in record["author"]
        assert f"#{pr.number}" in record["message"]
    finally:
        controller.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the controller did not stop"


def test_demo_promotion_tells_the_whole_story(tmp_path: Path) -> None:
    """`devenv demo --promotion` on its own cluster and forge: PR opened, plan commented, merged,
    rolled out through the webhook, audited; nothing left running."""
    demo = subprocess.run([DEVENV, "demo", "--promotion", "--dir", str(tmp_path / "demo")], capture_output=True,
                          text=True, timeout=600)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert re.search(r"\ncommitted [0-9a-f]{12} on branch promote/fraud-scorer-13: ", out)
    assert re.search(r"\npushed promote/fraud-scorer-13 to https://127\.0\.0\.1:\d+/", out)
    assert re.search(r"opened PR #1 \(promote/fraud-scorer-13 -> main\): https://127\.0\.0\.1:\d+/", out)
    assert "created comment https://" in out
    assert "canaryTrafficPercent=10," in out
    assert '"pull_request": "#1"' in out and '"result": "succeeded"' in out
    assert re.search(r"verify: \d+ records intact", out)
    assert "\n== What next\nThe cluster and the forge are stopped. `devenv demo --promotion --keep --dir " in out
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(tmp_path) in cmdline:
                left.append(cmdline.replace("\0", " ")[:200])
    assert left == []  # no etcd, apiserver, kwok or gitea of the demo's still running
