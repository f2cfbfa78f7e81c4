"""Issue #11 from the command line, on the local control plane and with no controller: a
rollout state written into the target's ConfigMap (as the controller would) is what `agent
apply` keeps and `agent diff` does not call drift; `agent rollout status|abort|promote` read
and steer it, and the next apply follows the override."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.cluster import Cluster, load_rollouts, save_rollouts
from agent.rollout import RolloutState

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"


def rollout_repo(root: Path, name: str, *, rollout: bool = True) -> Path:
    """Target and namespace `name`, one KServe model `scorer`: 1 stable, 2 the canary, under a
    canary rollout with steps 10/50/100 (without `rollout`: a fixed 50% canary)."""
    model_spec: dict[str, Any] = {
        "format": "sklearn", "runtime": "sklearn-server", "backend": "kserve",
        "versions": [{"version": "1", "uri": "s3://models/scorer/1/"}, {"version": "2", "uri": "s3://models/scorer/2/"}],
        "stable": "1", "canary": {"version": "2"}, "replicas": 1,
    }
    if rollout:
        model_spec["rollout"] = {"strategy": "canary", "steps": [10, 50, 100], "interval": "1m",
                                 "analysis": {"rules": ["error-rate"]}}
    else:
        model_spec["canary"]["traffic"] = 50
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [name]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [
            {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": name}, "spec": model_spec},
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer", "namespace": name},
             "spec": {"model": "scorer", "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                     "action": "rollback"}]}},
        ],
    }
    repo = root / name
    for rel, content in docs.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
    return repo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def canary_traffic(kubeconfig: Path, namespace: str) -> Any:
    with Cluster.connect(str(kubeconfig)) as cluster:
        obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", namespace)
    assert obj is not None
    return obj["spec"]["predictor"].get("canaryTrafficPercent", "none")


def write_state(kubeconfig: Path, target: str, state: RolloutState | None) -> None:
    """What the controller does: the model's state into modelops-rollouts-<target> (None: remove it)."""
    with Cluster.connect(str(kubeconfig)) as cluster:
        stored = load_rollouts(cluster, target)
        if state is None:
            stored.states.pop(f"{target}/scorer", None)
        else:
            stored.states[state.model] = state.to_json()
        save_rollouts(cluster, stored)


def stored_state(kubeconfig: Path, target: str) -> RolloutState:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return RolloutState.from_json(load_rollouts(cluster, target).states[f"{target}/scorer"])


def progressing(target: str, step: int, traffic: int) -> RolloutState:
    return RolloutState(model=f"{target}/scorer", version="2", stable="1", strategy="canary", phase="Progressing",
                        step=step, traffic=traffic, step_started=time.time() - 5, message="healthy so far")


def test_cli_follows_and_steers_a_rollout(kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = "rollcli"
    repo = str(rollout_repo(tmp_path, target))
    kc = ["--kubeconfig", str(kubeconfig)]
    write_state(kubeconfig, target, progressing(target, 1, 50))

    code, out, err = run(capsys, "apply", repo, *kc)
    assert code == 0, err
    assert canary_traffic(kubeconfig, target) == 50  # the rollout's step, not Git's 10
    assert "rollout in progress, step 2/3 (50%)" in out

    code, out, err = run(capsys, "diff", repo, *kc)
    assert code == 0, out + err  # the live 50% is the rollout's: no change, no drift
    assert "step 2/3" in out
    code, out, _ = run(capsys, "diff", repo, *kc, "-o", "json")
    doc = json.loads(out)
    note = next(m for m in doc["models"] if m["name"] == "scorer")["rollout"]
    assert {k: note[k] for k in ("phase", "step", "steps", "traffic", "version")} == {
        "phase": "Progressing", "step": 2, "steps": 3, "traffic": 50, "version": "2"}
    code, out, _ = run(capsys, "diff", repo, *kc, "-o", "markdown")
    assert "**rollout** `rollcli/scorer`: rollout in progress, step 2/3 (50%)" in out

    code, out, err = run(capsys, "status", repo, *kc, "-o", "json", "--allow-unknown")
    model = json.loads(out)["models"][0]
    assert model["synced"] is True, model
    assert model["rollout"]["phase"] == "Progressing" and model["rollout"]["traffic"] == 50
    code, out, _ = run(capsys, "status", repo, *kc)
    assert "rollout: Progressing step 2/3, 50% to 2" in out

    code, out, err = run(capsys, "rollout", "status", repo, *kc)
    assert code == 0, err
    assert "rollcli/scorer" in out and "Progressing" in out and "2/3" in out and "50%" in out
    code, out, _ = run(capsys, "rollout", "status", "scorer", repo, *kc, "-o", "json")
    assert [r["model"] for r in json.loads(out)["rollouts"]] == ["rollcli/scorer"]

    audit = tmp_path / "audit.jsonl"
    code, out, err = run(capsys, "rollout", "abort", "scorer", repo, *kc, "--reason", "p95 too high", "--as", "alice",
                         "--audit-log", str(audit))
    assert code == 0, err
    state = stored_state(kubeconfig, target)
    assert (state.phase, state.traffic) == ("Aborted", 0)
    assert "alice (p95 too high)" in state.message
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["event"] for r in records] == ["rollout-override"]
    assert records[0]["who"] == "alice" and records[0]["traffic"] == {"from": 50, "to": 0}
    code, _, _ = run(capsys, "audit", "verify", str(audit))
    assert code == 0

    code, out, err = run(capsys, "apply", repo, *kc)
    assert code == 0, err
    assert canary_traffic(kubeconfig, target) == 0

    write_state(kubeconfig, target, progressing(target, 0, 10))
    code, out, err = run(capsys, "rollout", "promote", "scorer", repo, *kc)
    assert code == 0, err
    state = stored_state(kubeconfig, target)
    assert (state.phase, state.traffic, state.step) == ("Succeeded", 100, 2)

    # pause holds the step's traffic (apply keeps it), resume goes on; both audited
    write_state(kubeconfig, target, progressing(target, 1, 50))
    code, out, err = run(capsys, "rollout", "pause", "scorer", repo, *kc, "--reason", "checking dashboards",
                         "--as", "carol", "--audit-log", str(audit))
    assert code == 0, err
    assert "paused by carol (checking dashboards) at step 2 (50%)" in out
    state = stored_state(kubeconfig, target)
    assert (state.phase, state.traffic, state.step) == ("Paused", 50, 1)
    code, out, err = run(capsys, "apply", repo, *kc)
    assert code == 0, err
    assert canary_traffic(kubeconfig, target) == 50 and "paused at step 2/3 (50%)" in out
    code, out, err = run(capsys, "rollout", "pause", "scorer", repo, *kc)
    assert code == 0 and "Paused already; nothing written" in out
    code, out, err = run(capsys, "rollout", "resume", "scorer", repo, *kc, "--as", "carol", "--audit-log", str(audit))
    assert code == 0, err
    state = stored_state(kubeconfig, target)
    assert (state.phase, state.traffic, state.step) == ("Progressing", 50, 1)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["action"], r["phase"]["to"]) for r in records[1:]] == [("pause", "Paused"), ("resume", "Progressing")]
    code, out, err = run(capsys, "rollout", "promote", "scorer", repo, *kc)
    assert code == 0, err
    code, out, err = run(capsys, "rollout", "pause", "scorer", repo, *kc)
    assert code == 2 and "Succeeded: only a progressing rollout can pause" in err, err

    # the state deleted while the cluster serves canary 2 at 50%: not "no rollout" (which would
    # start it again at 10%) but an invalid state that keeps the live 50% until a human acts
    write_state(kubeconfig, target, None)
    code, out, _ = run(capsys, "rollout", "status", repo, *kc)
    assert code == 0 and "Invalid" in out and "there is no stored state, but the cluster serves canary 2 at 50%" in out
    code, out, err = run(capsys, "apply", repo, *kc)
    assert code == 0, err
    assert canary_traffic(kubeconfig, target) == 50
    code, out, err = run(capsys, "rollout", "abort", "scorer", repo, *kc)
    assert code == 0, err
    assert (stored_state(kubeconfig, target).phase, stored_state(kubeconfig, target).traffic) == ("Aborted", 0)


def test_rollout_costs_one_get(kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A no-op apply of a repo with a rollout makes the requests of one without, plus the GET
    of the rollout states; nothing is written."""
    counts = {}
    for target, rollout in (("rollcli-gated", True), ("rollcli-plain", False)):
        repo = str(rollout_repo(tmp_path, target, rollout=rollout))
        if rollout:
            write_state(kubeconfig, target, progressing(target, 1, 50))
        kc = ["--kubeconfig", str(kubeconfig)]
        code, _, err = run(capsys, "apply", repo, *kc)
        assert code == 0, err
        code, out, err = run(capsys, "apply", repo, *kc, "-o", "json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["plan"]["changed"] is False
        counts[target] = doc["requests"]
    print(f"\nno-op apply requests: with a rollout {counts['rollcli-gated']}, without {counts['rollcli-plain']}")
    gated, plain = counts["rollcli-gated"], counts["rollcli-plain"]
    assert set(gated) == set(plain) == {"GET"}, counts
    assert gated["GET"] == plain["GET"] + 1, counts
