"""What a rollout does with answers it cannot trust, on the local control plane with the real
controller: a Prometheus answering ±Inf, NaN or garbage never moves traffic; a hanging one holds
only the rollout while the loop goes on reconciling; and a corrupted rollout ConfigMap after a
rollback never brings the rejected canary's traffic back, until a human repairs it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.cluster import Cluster, load_rollouts, rollouts_name
from agent.controller import Controller, RunConfig
from agent.rollout import RolloutState
from tests.integration._hostile_prometheus import HANG, HostilePrometheus, success, vector
from tests.integration._model_server import ModelServer
from tests.integration._repos import GIT
from tests.integration.conftest import audit_records, wait_until
from tests.integration.test_rollout import (  # noqa: F401 - fixtures used by name
    canary_traffic,
    controllers,
    rollout_repo,
    served,
)

pytestmark = pytest.mark.integration

ERRORS = "request_errors_total"  # the error-rate rule's metric (agent.spec.MetricNames)


def probe_repo(root: Path, name: str, interval: str = "2s") -> Path:
    """rollout_repo's model, its analysis with a `max` check and a `min` check beside the
    error-rate rule and minRequests (the probe's shape); the bare remote."""
    work, bare = rollout_repo(root, name, steps=[10, 50, 100], interval=interval, min_requests=5)
    path = work / "models" / "scorer.yaml"
    text = path.read_text().replace("      minRequests: 5\n", (
        "      minRequests: 5\n"
        "      checks:\n"
        "      - {name: p95, query: 'vector(0.1)', max: 0.5}\n"
        "      - {name: auc, query: 'vector(0.95)', min: 0.9}\n"))
    assert text != path.read_text()
    path.write_text(text)
    subprocess.run([*GIT, "commit", "-qam", "checks"], cwd=work, check=True)
    subprocess.run([*GIT, "push", "-q", str(bare), "main"], cwd=work, check=True)
    return bare


@pytest.fixture
def run_controller(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., Controller]]:
    started: list[tuple[Controller, threading.Thread]] = []

    def start(bare: Path, prometheus_url: str, deadline: float | None = None) -> Controller:
        config = RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                           http_addr=None, cache_dir=tmp_path / f"mirrors-{len(started)}",
                           audit_log=tmp_path / "audit.jsonl", prometheus_url=prometheus_url)
        controller = Controller(config)
        if deadline is not None:
            assert controller.rollouts.calls is not None
            controller.rollouts.calls.deadline = deadline
        thread = threading.Thread(target=controller.run, daemon=True)
        thread.start()
        started.append((controller, thread))
        return controller

    try:
        yield start
    finally:
        for controller, _ in started:
            controller.stop()
        for _, thread in started:
            thread.join(timeout=30)
            assert not thread.is_alive(), "the controller did not stop"


def stored(kubeconfig: Path, target: str) -> dict[str, Any]:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return load_rollouts(cluster, target).states[f"{target}/scorer"]


def passes(controller: Controller, trigger: str = "rollout") -> int:
    text = controller.metrics.exposition().decode()
    match = re.search(rf'modelops_agent_reconcile_duration_seconds_count{{trigger="{trigger}"}} ([0-9.e+]+)', text)
    return int(float(match.group(1))) if match else 0


# --- a hostile Prometheus -------------------------------------------------------------------------

def _probe(query: str) -> bytes:
    """The probe of the issue: -Inf for the error rate, +Inf for everything else."""
    return vector("-Inf" if ERRORS in query else "+Inf")


def _nan(query: str) -> bytes:
    return vector("NaN")


def _garbage(query: str) -> bytes:
    if ERRORS in query:
        return success({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "0"]]}]})
    if "vector(0.1)" in query:
        return success({"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1.0, "0"]},
                                                           {"metric": {"a": "2"}, "value": [1.0, "0"]}]})
    if "vector(0.95)" in query:
        return b"{" + b'"x": [' * 5000
    return vector("lots")


@pytest.mark.parametrize("answer", [_probe, _nan, _garbage], ids=["inf", "nan", "garbage"])
def test_a_hostile_prometheus_never_moves_traffic(tmp_path: Path, kubeconfig: Path,
                                                  run_controller: Callable[..., Controller],
                                                  answer: Callable[[str], bytes]) -> None:
    ns = f"ro-hostile-{answer.__name__.strip('_')}"
    bare = probe_repo(tmp_path / "repo", ns)
    fake = HostilePrometheus(answer)
    try:
        controller = run_controller(bare, fake.url)
        wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step at 10%", 60)
        key = f"{ns}/scorer"
        # the positive sign: the step has been up for three intervals (2 s each) and the analysis
        # has run at least twice more since: a healthy step would have advanced by then
        wait_until(lambda: time.time() - controller.rollouts.states[key].step_started > 3 * 2.0,
                   "three intervals at the first step", 30)
        first = fake.count()
        wait_until(lambda: fake.count() >= first + 4 * 2, "two more analysis rounds", 30)
        assert canary_traffic(kubeconfig, ns) == 10
        state = stored(kubeconfig, ns)
        assert (state["phase"], state["step"], state["traffic"]) == ("Progressing", 0, 10)
        live = controller.rollouts.states[key]
        assert (live.phase, live.step, live.traffic) == ("Progressing", 0, 10)
        assert live.last_checks and all(c.ok is None for c in live.last_checks), live.last_checks
        assert "not judged" in live.message, live.message
        kinds = [r["transition"] for r in audit_records(tmp_path / "audit.jsonl", "rollout")]
        assert kinds == ["started"], kinds
    finally:
        fake.close()


def test_a_hanging_prometheus_holds_the_rollout_not_the_loop(tmp_path: Path, kubeconfig: Path,
                                                             run_controller: Callable[..., Controller]) -> None:
    ns = "ro-hanging"
    bare = probe_repo(tmp_path / "repo", ns)
    fake = HostilePrometheus(lambda _query: HANG)
    try:
        controller = run_controller(bare, fake.url, deadline=1.0)
        wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step at 10%", 60)
        wait_until(lambda: fake.count() >= 1, "a query in flight", 30)
        before, started = passes(controller), time.monotonic()
        # the loop goes on: a pass every tick (~1 s) plus at most the 1 s deadline, where a query
        # waited for on the loop thread would hold every pass for the client's 10 s timeout.
        # Judged on the mean time per pass over four passes, so a loaded machine's slow pass
        # does not fail it while a pass held by the hanging query still would.
        wait_until(lambda: passes(controller) >= before + 4, "four more rollout passes", 90)
        per_pass = (time.monotonic() - started) / (passes(controller) - before)
        assert per_pass < 7.0, f"{per_pass:.1f} s per pass: the loop waited for Prometheus"
        live = controller.rollouts.states[f"{ns}/scorer"]
        assert (live.step, live.traffic) == (0, 10)
        assert "Prometheus did not answer within 1s" in live.message or \
            "Prometheus has not answered the previous query yet" in live.message, live.message
        assert canary_traffic(kubeconfig, ns) == 10
    finally:
        fake.close()


# --- a corrupted rollout ConfigMap after a rollback -------------------------------------------------

def write_data(kubeconfig: Path, target: str, data: dict[str, str]) -> None:
    """The ConfigMap's data replaced as someone with write access to it could."""
    with Cluster.connect(str(kubeconfig)) as cluster:
        info = cluster.kind("v1", "ConfigMap")
        cm = cluster.get(info, rollouts_name(target), "modelops-system")
        assert cm is not None
        cm["data"] = data
        cluster.replace(info, cm)


def invalid_gauge(controller: Controller, key: str) -> float | None:
    text = controller.metrics.exposition().decode()
    match = re.search(rf'modelops_agent_rollout_state_invalid{{model="{key}"}} ([0-9.]+)', text)
    return float(match.group(1)) if match else None


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_corrupted_state_never_brings_the_rolled_back_canary_back(
        tmp_path: Path, kubeconfig: Path, served: Callable[[str], ModelServer],  # noqa: F811
        controllers: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    ns = "ro-corrupt"
    key = f"{ns}/scorer"
    work, bare = rollout_repo(tmp_path / "repo", ns, steps=[10, 50, 100], interval="3s")
    server = served(ns)
    controller, _thread = controllers(bare)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step", 60)
    server.set("2", error_rate=0.5)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 0, "the rollback to 0%", 30)
    rolled_back = stored(kubeconfig, ns)
    assert rolled_back["phase"] == "RolledBack"
    audit = tmp_path / "audit.jsonl"
    data_key = f"{ns}.scorer"
    corruptions: list[tuple[str, dict[str, str]]] = [
        ("traffic 250", {data_key: json.dumps({**rolled_back, "traffic": 250})}),
        ("phase Bogus", {data_key: json.dumps({**rolled_back, "phase": "Bogus"})}),
        ("empty data", {}),
        ("step 99", {data_key: json.dumps({**rolled_back, "step": 99})}),
        ("traffic 60 of [10, 50, 100]", {data_key: json.dumps({**rolled_back, "phase": "Progressing", "step": 1,
                                                               "traffic": 60})}),
        ("not JSON", {data_key: '{"model": "' + key + '", "phase": '}),
    ]
    for what, data in corruptions:
        reported = len(audit_records(audit, "rollout-state-invalid"))
        write_data(kubeconfig, ns, data)
        records = wait_until(lambda n=reported: audit_records(audit, "rollout-state-invalid")[n:],  # type: ignore[misc]
                             f"the invalid state ({what}) reported", 30)
        assert len(records) == 1 and records[0]["model"] == key and records[0]["traffic"] == 0, records
        now = passes(controller)
        wait_until(lambda n=now: passes(controller) >= n + 2, "two more passes", 30)  # type: ignore[misc]
        assert canary_traffic(kubeconfig, ns) == 0, what
        assert invalid_gauge(controller, key) == 1.0

    with Cluster.connect(str(kubeconfig)) as cluster:
        events = cluster.request("GET", f"/api/v1/namespaces/{ns}/events")
    invalid = [e for e in events["items"] if e["reason"] == "RolloutStateInvalid"]
    assert len(invalid) == len(corruptions) and all(e["type"] == "Warning" for e in invalid)
    assert all(e["message"].startswith("invalid rollout state: ") for e in invalid)

    kc = ["--kubeconfig", str(kubeconfig)]
    code, out, err = run_cli(capsys, "status", str(work), *kc, "-o", "json")
    model = json.loads(out)["models"][0]
    assert model["health"] == "Degraded" and model["message"].startswith("invalid rollout state: "), model
    assert model["rollout"]["phase"] == "Invalid" and model["rollout"]["traffic"] == 0
    code, out, err = run_cli(capsys, "rollout", "status", str(work), *kc)
    assert code == 0 and "Invalid" in out and "invalid rollout state: " in out, out + err

    code, out, err = run_cli(capsys, "rollout", "abort", "scorer", str(work), *kc, "--as", "oncall",
                             "--audit-log", str(tmp_path / "human.jsonl"))
    assert code == 0, err
    repaired = RolloutState.from_json(stored(kubeconfig, ns))
    assert (repaired.phase, repaired.traffic, repaired.version) == ("Aborted", 0, "2")
    wait_until(lambda: invalid_gauge(controller, key) == 0.0, "the controller taking the repaired state", 30)
    now = passes(controller)
    wait_until(lambda: passes(controller) >= now + 2, "two more passes", 30)
    assert canary_traffic(kubeconfig, ns) == 0
    assert key not in controller.rollouts.held
    assert controller.rollouts.states[key].phase == "Aborted"
