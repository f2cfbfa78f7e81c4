"""A rollout that holds says why, on the local control plane with the real controller: without
`--prometheus-url` the controller warns once at start (log, Event, `rollout_held` gauge) and
`agent rollout status` says `no Prometheus configured` instead of calling the step healthy; a
quiet canary (minRequests not met, real Prometheus scraping a model server) says `N/M requests`;
and a traffic change committed to Git mid-rollout is noted by `agent promote`, `agent diff`,
`agent rollout status` and an Event once per commit, while the traffic stays at the step."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import Cluster
from agent.controller import Controller
from tests.integration._model_server import ModelServer
from tests.integration._repos import GIT
from tests.integration.conftest import wait_until
from tests.integration.test_rollout import (  # noqa: F401 - fixtures used by name
    canary_traffic,
    controllers,
    rollout_repo,
    served,
)
from tests.integration.test_rollout_trust import passes, run_cli, run_controller, stored  # noqa: F401

pytestmark = pytest.mark.integration


def events(kubeconfig: Path, ns: str, reason: str) -> list[dict[str, Any]]:
    with Cluster.connect(str(kubeconfig)) as cluster:
        items = cluster.request("GET", f"/api/v1/namespaces/{ns}/events")["items"]
    return [e for e in items if e["reason"] == reason]


def gauge(controller: Controller, name: str, labels: str) -> float | None:
    text = controller.metrics.exposition().decode()
    match = re.search(rf"modelops_agent_{name}{{{re.escape(labels)}}} ([0-9.e+-]+)", text)
    return float(match.group(1)) if match else None


def held_for(controller: Controller, key: str, intervals: float, interval: float) -> None:
    """The positive sign that the step had its chance: it has been up for `intervals` intervals
    and two more rollout passes ran since (a judged, healthy step would have advanced)."""
    wait_until(lambda: time.time() - controller.rollouts.states[key].step_started > intervals * interval,
               f"{intervals} intervals at the step", 60)
    now = passes(controller)
    wait_until(lambda: passes(controller) >= now + 2, "two more rollout passes", 30)


def test_without_prometheus_the_controller_warns_and_status_says_why(
        tmp_path: Path, kubeconfig: Path, run_controller: Callable[..., Controller],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    ns = "ro-held-noprom"
    key = f"{ns}/scorer"
    work, bare = rollout_repo(tmp_path / "repo", ns, steps=[10, 50, 100], interval="2s")
    controller = run_controller(bare, None)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step at 10%", 60)
    wait_until(lambda: (stored(kubeconfig, ns).get("hold") or {}).get("kind") == "no-prometheus",
               "the hold stored for status", 30)
    held_for(controller, key, 3, 2.0)
    assert canary_traffic(kubeconfig, ns) == 10
    assert stored(kubeconfig, ns)["step"] == 0

    warned = events(kubeconfig, ns, "RolloutHeld")
    assert len(warned) == 1 and warned[0]["type"] == "Warning", warned  # once, not per tick
    assert warned[0]["message"].startswith("no Prometheus configured (agent run --prometheus-url): spec.rollout "
                                           "judges each step with an analysis")
    assert warned[0]["involvedObject"]["kind"] == "InferenceService"
    assert gauge(controller, "rollout_held", f'model="{key}",reason="no-prometheus"') == 1.0
    assert gauge(controller, "rollout_step", f'model="{key}"') == 1.0  # step 1/3, as the CLI says

    kc = ["--kubeconfig", str(kubeconfig)]
    code, out, err = run_cli(capsys, "rollout", "status", str(work), *kc, "-o", "json")
    assert code == 0, err
    [row] = json.loads(out)["rollouts"]
    assert (row["step"], row["steps"], row["traffic"]) == (1, 3, 10)
    assert row["hold"]["kind"] == "no-prometheus" and row["hold"]["seconds"] >= 6, row
    assert row["hold"]["reason"] == "no Prometheus configured (agent run --prometheus-url)"
    assert "healthy" not in row["message"] and "not judged for" in row["message"], row
    code, out, err = run_cli(capsys, "rollout", "status", str(work), *kc)
    assert code == 0 and re.search(r"not judged for [0-9hms]+: no Prometheus configured", out), out + err
    assert "healthy" not in out
    code, out, err = run_cli(capsys, "status", str(work), *kc, "-o", "json")
    assert json.loads(out)["models"][0]["rollout"]["hold"]["kind"] == "no-prometheus", out + err


def test_a_quiet_canary_says_how_many_requests_it_has(
        tmp_path: Path, kubeconfig: Path, served: Callable[[str], ModelServer],  # noqa: F811
        controllers: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    ns = "ro-held-quiet"
    key = f"{ns}/scorer"
    work, bare = rollout_repo(tmp_path / "repo", ns, steps=[10, 50, 100], interval="3s", min_requests=100000)
    served(ns)  # 20 requests/s: some requests in a 3 s window, never 100000
    controller, _thread = controllers(bare)
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step at 10%", 60)
    counted = re.compile(r"[1-9][0-9]*/100000 requests")
    wait_until(lambda: counted.fullmatch((stored(kubeconfig, ns).get("hold") or {}).get("reason", "")),
               "the request count stored as the hold's reason", 60)
    held_for(controller, key, 3, 3.0)
    assert canary_traffic(kubeconfig, ns) == 10

    kc = ["--kubeconfig", str(kubeconfig)]
    code, out, err = run_cli(capsys, "rollout", "status", str(work), *kc, "-o", "json")
    assert code == 0, err
    [row] = json.loads(out)["rollouts"]
    assert row["hold"]["kind"] == "requests" and counted.fullmatch(row["hold"]["reason"]), row
    assert {c["name"]: c["ok"] for c in row["checks"]} == {"error-rate": None, "requests": None}
    assert re.search(r"not judged for [0-9hms]+: [0-9]+/100000 requests", row["message"]), row
    warned = events(kubeconfig, ns, "RolloutHeld")
    assert len(warned) == 1 and re.fullmatch(r"rollout of 2 held at step 1/3 \(10%\): not judged: "
                                             r"[0-9]+/100000 requests( \(no data\))?", warned[0]["message"]), warned
    assert gauge(controller, "rollout_held", f'model="{key}",reason="requests"') == 1.0


def test_a_git_traffic_change_mid_rollout_is_noted_and_the_step_keeps_its_traffic(
        tmp_path: Path, kubeconfig: Path, run_controller: Callable[..., Controller],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    ns = "ro-held-gittraffic"
    key = f"{ns}/scorer"
    work, bare = rollout_repo(tmp_path / "repo", ns, steps=[10, 50, 100], interval="2s")
    controller = run_controller(bare, None)  # no Prometheus: the rollout stays at its first step
    wait_until(lambda: canary_traffic(kubeconfig, ns) == 10, "the first step at 10%", 60)

    code, out, err = run_cli(capsys, "promote", "scorer", str(work), "--traffic", "50", "--commit")
    assert code == 0, err
    assert "canary 10% -> 50%" in out
    assert (f"{key}: note: traffic decided by spec.rollout (steps 10, 50, 100); Git's 50% is not applied while "
            "spec.rollout drives the canary") in out
    subprocess.run([*GIT, "push", "-q", str(bare), "main"], cwd=work, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                            text=True).stdout.strip()
    wait_until(lambda: controller.commit == commit, "the controller following the new commit", 30)
    noted = wait_until(lambda: events(kubeconfig, ns, "RolloutIgnoresGitTraffic"), "the Git traffic Event", 30)
    assert noted[0]["message"] == (f"commit {commit[:12]}: traffic decided by the rollout (step 1/3, 10%); Git's "
                                   "50% is not applied while spec.rollout drives the canary")
    now = passes(controller)
    wait_until(lambda: passes(controller) >= now + 3, "three more rollout passes", 30)
    assert canary_traffic(kubeconfig, ns) == 10  # the step's traffic, not Git's 50
    assert len(events(kubeconfig, ns, "RolloutIgnoresGitTraffic")) == 1  # once per commit

    kc = ["--kubeconfig", str(kubeconfig)]
    live = ("note: traffic decided by the rollout (step 1/3, 10%); Git's 50% is not applied while spec.rollout drives "
            "the canary")
    code, out, err = run_cli(capsys, "diff", str(work), *kc)
    assert code == 0 and f"  {key}: {live}" in out, out + err  # nothing to change: the step is what serves
    code, out, err = run_cli(capsys, "diff", str(work), *kc, "-o", "json")
    [model] = [m for m in json.loads(out)["models"] if m["name"] == "scorer"]
    assert model["notes"] == [live.removeprefix("note: ")], model
    code, out, err = run_cli(capsys, "rollout", "status", str(work), *kc)
    assert code == 0 and f"  {live}" in out, out + err
