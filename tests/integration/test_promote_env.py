"""Promotion between environments on live evidence, end to end: a model repo with a staging and
a production on real Gitea, staging's series served by a fake model server and scraped by the
real (Debian) Prometheus. A version healthy over production's soak (20 s) becomes exactly one
promotion PR with the evidence in its body (a second tick, and a restarted controller: still
one); one with a bad error rate is refused by `agent promote --to` (exit 2, the figures) and
nothing is pushed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.controller._env_promotion import EnvironmentPromotions
from agent.controller._rollouts import WriteBack
from agent.desired import load_desired
from agent.metrics_source import Prometheus
from agent.promotion import evidence_for
from agent.source import read_snapshot
from agent.spec import DEFAULT_LOADER
from devenv import cluster as dc
from devenv.cluster import ForgeInfo, PrometheusInfo, forge_create_repo
from tests.integration._forge_repos import branches, git, open_pulls, raw_file
from tests.integration._model_server import ModelServer

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")
API = "modelops.dev/v1alpha1"
NS = "fraud"
PROD = "environments/production.yaml"


def _model(name: str) -> str:
    return f"""\
apiVersion: {API}
kind: Model
metadata:
  name: {name}
spec:
  format: sklearn
  runtime: sklearn-server
  versions:
    - version: "12"
      uri: s3://models/{name}/12/
    - version: "13"
      uri: s3://models/{name}/13/
  stable: "13"   # what staging serves
  replicas: 1
---
apiVersion: {API}
kind: Monitor
metadata:
  name: {name}
spec:
  model: {name}
  rules:
    - name: error-rate
      type: errorRate
      threshold: 0.01
      for: 1m
      severity: critical
"""


def _repo(tmp_path: Path, info: ForgeInfo, prometheus: str, good: str, bad: str) -> tuple[Path, str]:
    name = f"envs-{uuid.uuid4().hex[:8]}"
    work = tmp_path / name
    files = {
        "repo.yaml": f"apiVersion: {API}\nkind: RepositoryConfig\nmetadata:\n  name: fleet\nspec:\n"
                     f"  defaults:\n    namespace: {NS}\n  policy:\n    allowedNamespaces: [{NS}]\n",
        "runtimes/sklearn.yaml": f"apiVersion: {API}\nkind: ServingRuntime\nmetadata:\n  name: sklearn-server\n"
                                 "spec:\n  image: registry.example/sklearn-server:1.5\n  formats: [sklearn]\n",
        f"models/{good}.yaml": _model(good),
        f"models/{bad}.yaml": _model(bad),
        "environments/staging.yaml": f"apiVersion: {API}\nkind: Environment\nmetadata:\n  name: staging\nspec:\n"
                                     f"  clusters: [staging]\n  prometheus: {prometheus}\n",
        PROD: f"""\
apiVersion: {API}
kind: Environment
metadata:
  name: production
spec:
  clusters: [prod-eu, prod-us]
  promotesFrom: staging
  soak: 20s          # short for the test
  promotion:
    policy: pullRequest
  models:
    {good}:
      stable: "12"   # production's own
    {bad}:
      stable: "12"
""",
    }
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    url = forge_create_repo(info, name)
    git(work, info, "init", "-q", "-b", "main")
    git(work, info, "config", "user.name", "promote-env-test")
    git(work, info, "config", "user.email", "promote@test.invalid")
    git(work, info, "add", "-A")
    git(work, info, "commit", "-qm", "staging serves 13, production 12")
    git(work, info, "remote", "add", "origin", url)
    git(work, info, "push", "-q", "origin", "main")
    deadline = time.monotonic() + 10
    while "main" not in branches(info, name):
        assert time.monotonic() < deadline, f"{name}: main never appeared on the forge"
        time.sleep(0.1)
    return work, name


def _promote(info: ForgeInfo, work: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **info.git_env()}
    return subprocess.run([AGENT, "promote", model, str(work), "--to", "production", *args, "--open-pr",
                           "--forge", "gitea", "--token-file", str(info.token_file), "--ca-file", str(info.ca_file)],
                          env=env, capture_output=True, text=True, timeout=180)


def test_healthy_version_one_pr_bad_refused(tmp_path: Path, gitea: ForgeInfo, prometheus: PrometheusInfo) -> None:
    good, bad = f"good-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    healthy = ModelServer(NS, good).track("13", "stable", error_rate=0.0, rps=20)
    failing = ModelServer(NS, bad).track("13", "stable", error_rate=0.2, rps=20)
    try:
        dc.prometheus_reload(prometheus, [healthy.target, failing.target])
        work, name = _repo(tmp_path, gitea, prometheus.url, good, bad)
        snapshot = read_snapshot(work, None)
        spec = DEFAULT_LOADER.load(dict(snapshot.files), snapshot.problems)

        # wait for a positive sign: the healthy version's evidence holds (served >= the 20 s soak)
        deadline = time.monotonic() + 120
        while not (evidence := evidence_for(spec, good, None, "production")).holds:
            assert time.monotonic() < deadline, f"the healthy version's evidence never held: {evidence.reasons}"
            time.sleep(1)
        # and the bad one has served the soak too (its target may be scraped a moment later): its
        # refusal is then for its error rate alone
        while not ((refused_ev := evidence_for(spec, bad, None, "production")).served_seconds or 0) >= 20:
            assert time.monotonic() < deadline, f"the bad version never served the soak: {refused_ev.reasons}"
            time.sleep(1)
        assert [r for r in refused_ev.reasons if "error-rate" not in r] == [], refused_ev.reasons

        # the CLI refuses the bad one with its figures, and pushes nothing
        out = _promote(gitea, work, bad)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "REFUSED" in out.stdout and "error-rate 0.2 > max 0.01" in out.stdout, out.stdout
        assert not any(b.startswith("promote/") for b in branches(gitea, name))

        # the controller's policy: one PR for the healthy version, the bad one refused (audited)
        records: list[tuple[str, dict[str, Any]]] = []
        write_back = WriteBack(url=git(work, gitea, "remote", "get-url", "origin").strip(), branch="main",
                               token=lambda: gitea.token, username=gitea.admin_user, ca_file=gitea.ca_file,
                               forge_kind="gitea", forge_api_url=gitea.api_url)

        def controller() -> EnvironmentPromotions:
            return EnvironmentPromotions(write_back=write_back, prometheus=Prometheus,
                                         record=lambda event, **fields: records.append((event, fields)))

        desired = load_desired(work, resolve=False)
        first = controller()
        made = first.tick(desired)
        assert [f["model"] for f in made] == [f"{NS}/{good}"], records
        branch = f"promote/production/{NS}-{good}-13"
        pulls = open_pulls(gitea, name)
        assert [(p["head"]["ref"], p["base"]["ref"]) for p in pulls] == [(branch, "main")]
        body = pulls[0]["body"]
        for part in ("- served: 13 has served in staging for", "- error-rate: 0 over 20s (max 0.01): ok",
                     "- requests:", f"- staging commit: {desired.revision.commit}", "From-Environment: staging",
                     "To-Environment: production", f"Model: {NS}/{good}"):
            assert part in body, body
        text = raw_file(gitea, name, PROD, branch)
        assert f'    {good}:\n      stable: "13"   # production\'s own\n    {bad}:\n      stable: "12"\n' in text
        refusals = [f for e, f in records if e == "environment-promotion" and f.get("outcome") == "refused"]
        assert [f["model"] for f in refusals] == [f"{NS}/{bad}"]
        tip = branches(gitea, name)[branch]

        assert first.tick(desired) == []  # a second tick: nothing new
        restarted = controller()  # a restarted controller finds the PR by its branch
        again = restarted.tick(desired)
        assert [f.get("found") for f in again] == [True]
        assert [p["number"] for p in open_pulls(gitea, name)] == [pulls[0]["number"]]
        assert branches(gitea, name)[branch] == tip
        assert not any(b.startswith(f"promote/production/{NS}-{bad}") for b in branches(gitea, name))
    finally:
        healthy.close()
        failing.close()


def test_the_fleet_promotes_by_policy(tmp_path: Path, gitea: ForgeInfo, prometheus: PrometheusInfo,
                                      kubeconfig: Path) -> None:
    """`agent run` (a Fleet) on the same kind of repo opens the promotion PR itself, on its own
    thread, for production (policy pullRequest): audited and counted. Its clusters are not in
    the kubeconfig (no member starts): promotion needs Git, the forge and Prometheus only."""
    from agent.cluster import Timeouts
    from agent.controller import Fleet, RunConfig
    from agent.source import Credentials
    from tests.integration.conftest import audit_records, wait_until

    good, bad = f"good-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    healthy = ModelServer(NS, good).track("13", "stable", error_rate=0.0, rps=20)
    failing = ModelServer(NS, bad).track("13", "stable", error_rate=0.2, rps=20)
    fleet = None
    thread = None
    try:
        dc.prometheus_reload(prometheus, [healthy.target, failing.target])
        work, name = _repo(tmp_path, gitea, prometheus.url, good, bad)
        audit = tmp_path / "audit.jsonl"
        config = RunConfig(repo=git(work, gitea, "remote", "get-url", "origin").strip(), interval=1.0,
                           resync=600.0, kubeconfig=str(kubeconfig), cache_dir=tmp_path / "mirrors",
                           audit_log=audit, http_addr=None, forge="gitea", forge_api_url=gitea.api_url,
                           credentials=Credentials(token_file=gitea.token_file, username=gitea.admin_user,
                                                   ca_file=gitea.ca_file),
                           timeouts=Timeouts(connect=2.0, read=5.0, budget=4.0))
        fleet = Fleet(config)
        import threading

        thread = threading.Thread(target=fleet.run, daemon=True)
        thread.start()
        branch = f"promote/production/{NS}-{good}-13"
        wait_until(lambda: [p["head"]["ref"] for p in open_pulls(gitea, name)] == [branch],
                   "the fleet's promotion PR", timeout=150)
        # (the healthy one may have been refused first, before it had served the soak)
        records = wait_until(lambda: [r for r in audit_records(audit, "environment-promotion")
                                      if r.get("outcome") == "refused" and r["model"] == f"{NS}/{bad}"
                                      and any("error-rate" in reason for reason in r["reasons"])],
                             "the bad version's refusal for its error rate", timeout=60)
        assert records
        proposed = wait_until(lambda: [r for r in audit_records(audit, "environment-promotion")
                                       if r.get("outcome") == "proposed"], "the proposal's audit record", timeout=30)
        assert [r["model"] for r in proposed] == [f"{NS}/{good}"]
        ticks = fleet.promotions.promotions.ticks
        wait_until(lambda: fleet is not None and fleet.promotions.promotions.ticks >= ticks + 2, "two more ticks",
                   timeout=60)
        assert [p["head"]["ref"] for p in open_pulls(gitea, name)] == [branch]  # still one
        assert not any(b.startswith(f"promote/production/{NS}-{bad}") for b in branches(gitea, name))
        exposition = fleet.metrics.exposition().decode()
        assert 'modelops_agent_environment_promotions_total{environment="production",outcome="promoted"} 1.0' \
            in exposition, exposition
    finally:
        if fleet is not None and thread is not None:
            fleet.stop()
            thread.join(timeout=60)
        healthy.close()
        failing.close()
