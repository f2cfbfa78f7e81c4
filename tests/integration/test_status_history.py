"""`agent status` and `agent history` on the local control plane, as a user meets them: the
last sync of each apply, a rollout aborted by a human shown Degraded (exit 1), the live state
still shown (exit 2) when the local checkout stops validating, `status -w` printing a document
per change until Ctrl-C (exit 0), and the model's deployments read back from the audit log."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.cluster import Cluster, load_rollouts, save_rollouts
from agent.rollout import RolloutState
from tests.integration._repos import GIT

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"


def write_repo(repo: Path, name: str, *, canary: bool) -> None:
    """Target and namespace `name`, one KServe model `scorer` (stable 1; with `canary`, 2 under a
    canary rollout 10/50/100)."""
    spec: dict[str, Any] = {
        "format": "sklearn", "runtime": "sklearn-server", "backend": "kserve", "replicas": 1, "stable": "1",
        "versions": [{"version": "1", "uri": "s3://models/scorer/1/"}, {"version": "2", "uri": "s3://models/scorer/2/"}],
    }
    if canary:
        spec["canary"] = {"version": "2"}
        spec["rollout"] = {"strategy": "canary", "steps": [10, 50, 100], "interval": "1m",
                           "analysis": {"rules": ["error-rate"]}, "onSuccess": "none"}
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [name]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [
            {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": name}, "spec": spec},
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer", "namespace": name},
             "spec": {"model": "scorer", "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                     "action": "rollback"}]}},
        ],
    }
    for rel, content in docs.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))


def commit(repo: Path, message: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start_rollout(kubeconfig: Path, target: str) -> None:
    """What the controller does when the canary appears: step 1 of 3, 10%, in the target's ConfigMap."""
    state = RolloutState(model=f"{target}/scorer", version="2", stable="1", strategy="canary", phase="Progressing",
                         step=0, traffic=10, step_started=time.time() - 5, message="healthy so far")
    with Cluster.connect(str(kubeconfig)) as cluster:
        stored = load_rollouts(cluster, target)
        stored.states[state.model] = state.to_json()
        save_rollouts(cluster, stored)


@pytest.fixture
def story(tmp_path: Path, kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A repo applied twice from git (stable 1, then canary 2 under a rollout the controller
    started), with an audit log."""
    target = f"st-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / target
    audit = tmp_path / "audit.jsonl"
    kc = ["--kubeconfig", str(kubeconfig)]
    write_repo(repo, target, canary=False)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=repo, check=True)
    first = commit(repo, "scorer 1")
    code, _, err = run(capsys, "apply", str(repo), "--revision", "HEAD", "--audit-log", str(audit), *kc)
    assert code == 0, err
    write_repo(repo, target, canary=True)
    second = commit(repo, "scorer 2 as a canary (#7)")
    start_rollout(kubeconfig, target)
    code, _, err = run(capsys, "apply", str(repo), "--revision", "HEAD", "--audit-log", str(audit), *kc)
    assert code == 0, err
    return {"target": target, "repo": repo, "audit": audit, "kc": kc, "first": first, "second": second}


def test_status_after_an_abort_and_an_invalid_checkout_and_the_history(
        story: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    repo, audit, kc, target = str(story["repo"]), str(story["audit"]), story["kc"], story["target"]
    code, out, err = run(capsys, "status", repo, "--revision", "HEAD", *kc, "-o", "json")
    doc = json.loads(out)
    assert code == 0, out + err
    assert doc["lastSync"]["commit"] == story["second"] and doc["lastSync"]["by"] == "agent apply"
    assert doc["lastSync"]["ageSeconds"] < 60
    code, out, _ = run(capsys, "status", repo, "--revision", "HEAD", *kc)
    assert f"last sync: commit {story['second'][:12]}, " in out and " by agent apply" in out

    # a human aborts the rollout: the new version has no traffic, the model is not Healthy
    code, _, err = run(capsys, "rollout", "abort", "scorer", repo, "--reason", "error rate", "--as", "alice",
                       "--audit-log", audit, *kc)
    assert code == 0, err
    code, out, _ = run(capsys, "status", repo, "--revision", "HEAD", *kc, "-o", "json")
    model = json.loads(out)["models"][0]
    assert code == 1
    assert model["health"] == "Degraded" and model["message"].startswith("rollout aborted by alice"), model
    code, out, _ = run(capsys, "status", repo, "--revision", "HEAD", *kc)
    assert code == 1 and "Degraded" in out and "rollout aborted by alice" in out
    code, _, err = run(capsys, "apply", repo, "--revision", "HEAD", "--audit-log", audit, *kc)
    assert code == 0, err  # 0% to the canary now

    # the checkout stops validating: the live view all the same, then the problems, exit 2
    model_file = story["repo"] / "models" / "scorer.yaml"
    model_file.write_text(model_file.read_text().replace("stable: '1'", "stable: '9'"))
    code, out, err = run(capsys, "status", repo, *kc, "-o", "json")
    assert code == 2
    doc = json.loads(out)
    assert doc["target"] == target and doc["revision"] is None
    assert doc["localProblems"]["count"] == 1 and "stable" in doc["localProblems"]["errors"][0]
    live = doc["models"][0]
    assert (live["namespace"], live["name"], live["version"], live["synced"]) == (target, "scorer", "1", None)
    assert live["canary"] == {"version": "2", "traffic": 0}
    assert live["health"] == "Degraded" and live["rollout"]["phase"] == "Aborted"
    assert doc["lastSync"]["commit"] == story["second"]
    assert "models/scorer.yaml" in err and "shown is the live state of target" in err
    code, out, err = run(capsys, "status", repo, *kc)
    assert code == 2 and f"{target}/scorer" in out and "Degraded" in out and "last sync:" in out
    assert "Traceback" not in err

    # the deployments, newest first
    code, out, err = run(capsys, "history", "scorer", repo, "--audit-log", audit, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"] == target  # read from the (invalid) checkout's RepositoryConfig
    rows = doc["deployments"]
    assert [r["commit"] for r in rows] == [story["second"], story["first"]]
    canary, first = rows
    assert (canary["stable"], canary["canary"], canary["traffic"], canary["pullRequest"]) == ("1", "2", 0, "#7")
    assert canary["applies"] == 2 and canary["result"] == "succeeded" and canary["author"].startswith("Tester")
    assert canary["rollout"]["outcome"] == "aborted" and "alice" in canary["rollout"]["detail"]
    assert (first["stable"], first["canary"], first["rollout"]) == ("1", None, None)
    code, out, _ = run(capsys, "history", "scorer", repo, "--audit-log", audit)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "MODEL", "COMMIT"]
    assert story["second"][:12] in lines[1] and "1, canary 2 at 0%" in lines[1] and "#7" in lines[1]
    assert lines[1].endswith("  aborted by alice: error rate")
    assert any(story["first"][:12] in line for line in lines[2:])


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def test_status_watch_prints_a_document_per_change_until_ctrl_c(
        story: dict[str, Any], kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = str(story["repo"])
    proc = subprocess.Popen([sys.executable, "-m", "agent", "status", repo, "--revision", "HEAD", "-w", "-o", "json",
                             *story["kc"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = _lines(proc)
        first = json.loads(lines.get(timeout=60))
        assert first["models"][0]["health"] == "Healthy"
        assert first["models"][0]["rollout"]["phase"] == "Progressing"
        time.sleep(4.5)  # two ticks with nothing changed: the next document must be the abort's
        code, _, err = run(capsys, "rollout", "abort", "scorer", repo, *story["kc"])
        assert code == 0, err
        second = json.loads(lines.get(timeout=30))
        assert second["models"][0]["health"] == "Degraded"
        assert second["models"][0]["rollout"]["phase"] == "Aborted"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_controller_refreshes_its_last_sync_mark_when_nothing_changes(tmp_path: Path, kubeconfig: Path) -> None:
    from agent.cluster import LAST_SYNC, load_inventory
    from agent.controller import Controller, RunConfig
    from tests.integration.conftest import wait_until

    target = f"sm-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    write_repo(work, target, canary=False)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=work, check=True)
    head = commit(work, "scorer 1")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    config = RunConfig(repo=str(bare), interval=0.5, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                       cache_dir=tmp_path / "mirrors", sync_mark_every=1.0)
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()

    def mark() -> dict[str, Any]:
        with Cluster.connect(str(kubeconfig)) as cluster:
            return dict(json.loads(load_inventory(cluster, target).annotations.get(LAST_SYNC, "{}")))

    try:
        first = wait_until(lambda: mark().get("by") == "controller" and mark(), "the controller's first mark", 60)
        assert first["commit"] == head and first["source"] == f"{bare}@main"
        applied = sum(1 for _, o in controller.outcomes if o.report.results)
        later = wait_until(lambda: (m := mark())["time"] > first["time"] and m, "a refreshed mark", 30)
        assert later["commit"] == head
        assert sum(1 for _, o in controller.outcomes if o.report.results) == applied  # refreshed by no-op passes
    finally:
        controller.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
