"""Issue #8 on the real control plane with real git remotes: `agent run` applies pushed commits
(polling and webhook), keeps the last good commit when a bad one comes, heals or reports drift,
elects one leader among two processes, and stops cleanly on SIGTERM."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cluster import Cluster, lease_name, well_known
from agent.controller import Controller, RunConfig
from tests.integration._repos import GIT, make_repo, model_path

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")
SECRET = b"s3cret-for-tests"


class Remote:
    """A bare git remote and a working clone that pushes to it."""

    def __init__(self, root: Path, target: str, prefix: str, n: int = 4) -> None:
        self.work = make_repo(root / "work", target, prefix, n)
        self.prefix = prefix
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.bare)], check=True)
        subprocess.run(["git", "remote", "add", "origin", str(self.bare)], cwd=self.work, check=True)
        self.url = f"file://{self.bare}"

    def push(self, message: str) -> str:
        subprocess.run([*GIT, "add", "-A"], cwd=self.work, check=True)
        subprocess.run([*GIT, "commit", "-qm", message], cwd=self.work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.work, check=True, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.work, check=True, capture_output=True,
                              text=True).stdout.strip()

    def edit_model(self, i: int, change: Callable[[dict[str, Any]], None]) -> None:
        path = model_path(self.work, self.prefix, i)
        docs = list(yaml.safe_load_all(path.read_text()))
        change(docs[0])
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def isvc(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any] | None:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), name, namespace)


def min_replicas(kubeconfig: Path, namespace: str, name: str) -> Any:
    obj = isvc(kubeconfig, namespace, name)
    return None if obj is None else obj["spec"]["predictor"].get("minReplicas")


def set_replicas(remote: Remote, i: int, replicas: int) -> None:
    def change(model: dict[str, Any]) -> None:
        model["spec"].pop("autoscaling", None)
        model["spec"]["replicas"] = replicas
    remote.edit_model(i, change)


@pytest.fixture
def run_controller(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    """Start in-process controllers (each in a thread); stop them all at the end."""
    started: list[tuple[Controller, threading.Thread]] = []

    def start(remote: Remote, **overrides: Any) -> Controller:
        secret = tmp_path / "webhook-secret"
        secret.write_bytes(SECRET + b"\n")
        config = RunConfig(repo=remote.url, interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                           http_addr="127.0.0.1:0", webhook_secret_file=secret,
                           cache_dir=tmp_path / f"mirrors-{len(started)}", audit_log=tmp_path / "audit.jsonl")
        for key, value in overrides.items():
            setattr(config, key, value)
        controller = Controller(config)
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        started.append((controller, thread))
        return controller

    try:
        yield start
    finally:
        for controller, _thread in started:
            controller.stop()
        for _controller, thread in started:
            thread.join(timeout=30)
            assert not thread.is_alive(), "the controller did not stop"


def ready(controller: Controller) -> bool:
    return controller.ready and controller.http is not None


def settled(controller: Controller) -> bool:
    """Ready, and no canary held back for its stable revision any more (the pass after the
    InferenceService turned Ready has applied it)."""
    if not controller.ready or not controller.outcomes:
        return False
    plan = controller.outcomes[-1][1].plan
    return not any(note.phase == "Staged" for note in plan.rollouts.values())


def webhook(controller: Controller, body: dict[str, Any], secret: bytes = SECRET) -> int:
    assert controller.http is not None
    data = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{controller.http.url}/webhook", data=data, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def metric(controller: Controller, name: str) -> float:
    text = controller.metrics.exposition().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_pushed_commit_is_applied_by_polling(tmp_path: Path, kubeconfig: Path, wait_for: Any,
                                               run_controller: Callable[..., Controller]) -> None:
    remote = Remote(tmp_path, "ctl-poll", "ctlpoll")
    controller = run_controller(remote)
    wait_for(lambda: ready(controller), "the first sync", timeout=120)
    assert isvc(kubeconfig, "ctlpoll-0", "model-0000") is not None
    set_replicas(remote, 0, 3)
    commit = remote.push("three replicas for model-0000")
    wait_for(lambda: min_replicas(kubeconfig, "ctlpoll-0", "model-0000") == 3, "the pushed commit applied", timeout=60)
    assert controller.commit == commit


def test_a_signed_webhook_applies_at_once_and_a_bad_signature_nothing(
        tmp_path: Path, kubeconfig: Path, wait_for: Any, run_controller: Callable[..., Controller]) -> None:
    remote = Remote(tmp_path, "ctl-hook", "ctlhook")
    controller = run_controller(remote, interval=3600.0)  # no polling: only the webhook can bring the commit in
    wait_for(lambda: ready(controller), "the first sync", timeout=120)
    first = controller.fetched
    set_replicas(remote, 1, 5)
    commit = remote.push("five replicas for model-0001")
    push = {"ref": "refs/heads/main", "after": commit}
    assert webhook(controller, push, secret=b"wrong") == 401
    assert webhook(controller, {"ref": "refs/heads/other", "after": commit}) == 202
    # A wrongly accepted push would have queued a fetch before its answer. An (empty) Alertmanager
    # delivery asks for a pass that fetches nothing; the queue is FIFO, so once that pass is
    # counted, the wrong fetch would have been made: nothing may have been fetched.
    passes = 'modelops_agent_reconcile_duration_seconds_count{trigger="rollout"}'
    before = metric(controller, passes)
    alerts = urllib.request.Request(f"{controller.http.url}/alerts", data=b'{"alerts": []}', method="POST", headers={
        "Authorization": f"Bearer {SECRET.decode()}", "Content-Type": "application/json"})
    with urllib.request.urlopen(alerts, timeout=10) as response:
        assert response.status == 200
    wait_for(lambda: metric(controller, passes) > before, "the pass asked for after the pushes", timeout=30)
    assert controller.fetched == first
    assert webhook(controller, push) == 202
    wait_for(lambda: min_replicas(kubeconfig, "ctlhook-1", "model-0001") == 5, "the webhook's commit applied", timeout=30)
    assert controller.fetched == commit


def test_a_bad_commit_keeps_the_last_good_state_and_is_reported(
        tmp_path: Path, kubeconfig: Path, wait_for: Any, run_controller: Callable[..., Controller]) -> None:
    remote = Remote(tmp_path, "ctl-bad", "ctlbad")
    controller = run_controller(remote)
    wait_for(lambda: settled(controller), "the first sync", timeout=120)
    good = controller.commit
    before = isvc(kubeconfig, "ctlbad-0", "model-0000")
    assert before is not None

    def break_it(model: dict[str, Any]) -> None:
        model["spec"]["replicas"] = -3
        model["spec"].pop("autoscaling", None)
    remote.edit_model(0, break_it)
    set_replicas(remote, 1, 7)  # a valid change in the same bad commit: it must not be applied either
    bad = remote.push("negative replicas")
    wait_for(lambda: metric(controller, "modelops_agent_invalid_commits_total") >= 1, "the invalid commit metric")
    assert controller.commit == good and controller.invalid["commit"] == bad
    assert any("spec.replicas" in e for e in controller.invalid["errors"])
    after = isvc(kubeconfig, "ctlbad-0", "model-0000")
    # nothing written (the generation counts spec writes; the simulated KServe status does not)
    assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert min_replicas(kubeconfig, "ctlbad-1", "model-0001") != 7
    events = json.loads(subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "events", "-n",
                                        "modelops-system", "-o", "json"], check=True, capture_output=True,
                                       text=True, timeout=60).stdout)["items"]
    assert any(e["reason"] == "InvalidCommit" and bad[:12] in e["message"] for e in events)
    assert controller.config.audit_log is not None
    audit = [json.loads(line) for line in controller.config.audit_log.read_text().splitlines()]
    assert any(r["event"] == "invalid-commit" and r["commit"] == bad for r in audit)
    # --allow-unknown: no KServe controller here, so the exit 1 is the refused commit's
    status = subprocess.run([sys.executable, "-m", "agent", "status", str(remote.work), "--revision", good,
                             "--kubeconfig", str(kubeconfig), "--allow-unknown"],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"invalid commit {bad[:12]}" in status.stdout and "spec.replicas" in status.stdout

    remote.edit_model(0, lambda m: m["spec"].update(replicas=1))
    fixed = remote.push("fix replicas")
    wait_for(lambda: min_replicas(kubeconfig, "ctlbad-1", "model-0001") == 7, "the next good commit applied", timeout=60)
    assert controller.commit == fixed
    status = subprocess.run([sys.executable, "-m", "agent", "status", str(remote.work), "--revision", fixed,
                             "--kubeconfig", str(kubeconfig), "-o", "json"], capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)["invalidCommit"] is None


@pytest.mark.parametrize("policy", ["heal", "detect"])
def test_drift_is_healed_or_reported(policy: str, tmp_path: Path, kubeconfig: Path, wait_for: Any,
                                     run_controller: Callable[..., Controller]) -> None:
    prefix = f"ctl{policy}"
    remote = Remote(tmp_path, f"ctl-{policy}", prefix)
    set_replicas(remote, 0, 2)
    remote.push("fixed replicas")
    controller = run_controller(remote, drift_policy=policy, interval=3600.0)
    wait_for(lambda: settled(controller), "the first sync", timeout=120)
    assert min_replicas(kubeconfig, f"{prefix}-0", "model-0000") == 2
    subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "-n", f"{prefix}-0", "patch", "inferenceservice",
                    "model-0000", "--type", "merge", "-p", '{"spec":{"predictor":{"minReplicas":5,"maxReplicas":5}}}'],
                   check=True, capture_output=True, timeout=60)
    if policy == "heal":
        wait_for(lambda: min_replicas(kubeconfig, f"{prefix}-0", "model-0000") == 2, "the drift healed", timeout=30)
        assert metric(controller, 'modelops_agent_drift_events_total{policy="heal"}') >= 1
    else:
        wait_for(lambda: metric(controller, 'modelops_agent_drift_events_total{policy="detect"}') >= 1,
                 "the drift reported", timeout=30)
        assert min_replicas(kubeconfig, f"{prefix}-0", "model-0000") == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(remote: Remote, kubeconfig: Path, tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process below
    env = {**os.environ, "AGENT_CACHE_DIR": str(tmp_path / f"cache-{name}")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--repo", remote.url, "--interval", "1s", "--kubeconfig", str(kubeconfig),
         "--http-addr", f"127.0.0.1:{port}", "--audit-log", str(tmp_path / f"{name}.jsonl"), *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    log.close()
    return proc, port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()
    except OSError:
        return 0, ""


def _sample(text: str, series: str) -> float:
    """The value of `series` (name and labels as exposed) in a /metrics text; 0 when absent."""
    for line in text.splitlines():
        if line.rpartition(" ")[0] == series:
            return float(line.rpartition(" ")[2])
    return 0.0


def _holder(kubeconfig: Path, target: str) -> str:
    info = well_known("coordination.k8s.io/v1", "Lease")
    assert info is not None
    with Cluster.connect(str(kubeconfig)) as cluster:
        lease = cluster.get(info, lease_name(target), "modelops-system")
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def test_two_replicas_elect_one_writer_and_the_other_takes_over(tmp_path: Path, kubeconfig: Path, wait_for: Any) -> None:
    remote = Remote(tmp_path, "ctl-leader", "ctlleader")
    procs: list[subprocess.Popen[str]] = []
    try:
        a, port_a = _spawn(remote, kubeconfig, tmp_path, "a", "--leader-elect")
        b, port_b = _spawn(remote, kubeconfig, tmp_path, "b", "--leader-elect")
        procs += [a, b]
        holder = wait_for(lambda: _holder(kubeconfig, "ctl-leader"), "a leader", timeout=120)
        leader, follower = (a, b) if holder.endswith(f"/{a.pid}") else (b, a)
        assert holder.endswith(f"/{leader.pid}")
        wait_for(lambda: isvc(kubeconfig, "ctlleader-0", "model-0000"), "the leader's first sync", timeout=120)
        name = {a.pid: "a", b.pid: "b"}
        port = {a.pid: port_a, b.pid: port_b}

        def follower_passes() -> float:
            code, text = _get(port[follower.pid], "/metrics")
            return _sample(text, 'modelops_agent_passes_total{role="follower"}') if code == 200 else 0.0

        # The follower ran three more passes (a pass needs the loaded commit; the first one starts
        # its election), each counted on its /metrics once done: a follower that wrote would have
        # done so by now.
        seen = follower_passes()
        wait_for(lambda: follower_passes() >= seen + 3, "three more follower passes", timeout=60)
        follower_log = tmp_path / f"{name[follower.pid]}.jsonl"
        assert not follower_log.exists() or not [
            line for line in follower_log.read_text().splitlines() if '"event":"object"' in line]
        leader.kill()
        leader.wait(timeout=30)
        wait_for(lambda: _holder(kubeconfig, "ctl-leader").endswith(f"/{follower.pid}"), "the follower takes over",
                 timeout=60)
        set_replicas(remote, 2, 6)
        remote.push("six replicas for model-0002")
        wait_for(lambda: min_replicas(kubeconfig, "ctlleader-2", "model-0002") == 6, "the new leader applies", timeout=60)
        assert '"event":"object"' in follower_log.read_text()
    finally:
        _stop(procs)


def test_probes_metrics_and_sigterm(tmp_path: Path, kubeconfig: Path, wait_for: Any) -> None:
    remote = Remote(tmp_path, "ctl-term", "ctlterm")
    proc, port = _spawn(remote, kubeconfig, tmp_path, "term", "--leader-elect")
    try:
        wait_for(lambda: _get(port, "/healthz")[0] == 200, "/healthz", timeout=60)
        wait_for(lambda: _get(port, "/readyz")[0] == 200, "/readyz after the first sync", timeout=120)
        code, text = _get(port, "/metrics")
        assert code == 200 and "modelops_agent_reconcile_duration_seconds" in text
        assert 'modelops_agent_leader 1.0' in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        _stop([proc])
    assert _holder(kubeconfig, "ctl-term") == ""  # released, not left to expire
    verify = subprocess.run([sys.executable, "-m", "agent", "audit", "verify", str(tmp_path / "term.jsonl")],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_unreachable_remote_keeps_the_last_good_state_and_recovers(
        tmp_path: Path, kubeconfig: Path, wait_for: Any, run_controller: Callable[..., Controller]) -> None:
    remote = Remote(tmp_path, "ctl-gone", "ctlgone")
    controller = run_controller(remote)
    wait_for(lambda: ready(controller), "the first sync", timeout=120)
    good = controller.commit
    hidden = remote.bare.with_name("hidden.git")
    remote.bare.rename(hidden)
    try:
        wait_for(lambda: metric(controller, "modelops_agent_git_fetch_errors_total") >= 2, "fetch errors counted")
        assert controller.commit == good and "remote.git" in controller.source_error
        assert controller.ready  # the last good commit is still in force
    finally:
        hidden.rename(remote.bare)
    set_replicas(remote, 3, 8)
    remote.push("eight replicas for model-0003")
    wait_for(lambda: min_replicas(kubeconfig, "ctlgone-0", "model-0003") == 8, "applied after the remote came back",
             timeout=120)


def test_watch_dir_applies_a_working_copy_edit_without_a_commit(
        tmp_path: Path, kubeconfig: Path, wait_for: Any, run_controller: Callable[..., Controller]) -> None:
    remote = Remote(tmp_path, "ctl-dir", "ctldir")
    controller = run_controller(remote, watch_dir=remote.work, interval=3600.0)
    wait_for(lambda: ready(controller), "the first sync", timeout=120)
    set_replicas(remote, 0, 9)  # edited on disk, not committed
    wait_for(lambda: min_replicas(kubeconfig, "ctldir-0", "model-0000") == 9, "the edit applied", timeout=30)
