"""A stored rollout state that does not parse or does not fit the declared rollout never moves
traffic: the pure judgement (agent.rollout.judge_stored), the live canary it falls back on, the
human's repair, the ConfigMap edge keeping an unreadable entry, the CLI showing and repairing it,
and the controller's driver holding the traffic and reporting it once. Also the driver's
Prometheus calls off the loop thread, with a deadline."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.cluster import load_rollouts
from agent.controller._rollouts import RolloutDriver
from agent.engine import load_desired, read_rollouts
from agent.rollout import InvalidState, LiveCanary, RolloutState, fit_problem, judge_stored, live_canary_of, repair
from agent.spec import Model
from tests.unit.test_rollout_cli import KEY, FakeCluster, connected, state, write_repo

NOW = time.time()


def isvc(version: str | None, traffic: Any) -> dict[str, Any]:
    annotations = {"modelops.dev/canary-version": version} if version is not None else {}
    predictor: dict[str, Any] = {} if traffic is None else {"canaryTrafficPercent": traffic}
    return {"metadata": {"name": "scorer", "namespace": "team", "annotations": annotations},
            "spec": {"predictor": predictor}}


@pytest.fixture
def model(tmp_path: Path) -> Model:
    return load_desired(write_repo(tmp_path / "repo"), cached=False).spec.models[0]


def never() -> LiveCanary:
    raise AssertionError("the live object was read although the stored state answers")


# --- fit ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "problem"), [
    ({"step": 99}, "step 100 is not one of the 3 declared steps"),
    ({"step": 1, "traffic": 60}, "traffic 60 is not what a Progressing rollout has at step 2 of [10, 50, 100] (50)"),
    ({"phase": "Paused", "step": 0, "traffic": 50}, "traffic 50 is not what a Paused rollout"),
    ({"phase": "RolledBack", "step": 1, "traffic": 60}, "is not what a RolledBack rollout has"),
    ({"phase": "Aborted", "step": 2, "traffic": 100}, "(0)"),
    ({"phase": "Succeeded", "step": 2, "traffic": 50}, "(100)"),
    ({"strategy": "blueGreen", "step": 0, "traffic": 0}, "Git declares canary"),
])
def test_a_state_that_does_not_fit_the_declared_steps(model: Model, fields: dict[str, Any], problem: str) -> None:
    assert problem in (fit_problem(replace(state(), **fields), model) or "")


@pytest.mark.parametrize("fields", [
    {"step": 0, "traffic": 10}, {"step": 2, "traffic": 100}, {"phase": "Paused", "step": 1, "traffic": 50},
    {"phase": "RolledBack", "step": 1, "traffic": 0}, {"phase": "Aborted", "step": 0, "traffic": 0},
    {"phase": "Succeeded", "step": 2, "traffic": 100},
])
def test_states_the_machine_writes_fit(model: Model, fields: dict[str, Any]) -> None:
    assert fit_problem(replace(state(), **fields), model) is None


# --- judge_stored -------------------------------------------------------------------------------------

def test_a_valid_state_is_used_without_reading_the_live_object(model: Model) -> None:
    valid = state()
    assert judge_stored(model, valid.to_json(), never) == valid


@pytest.mark.parametrize(("raw", "reason"), [
    ({"traffic": 250}, "traffic must be an integer >= 0 and <= 100, got 250"),
    ({"phase": "Bogus"}, 'phase must be one of Progressing, Paused, Succeeded, RolledBack, Aborted, got "Bogus"'),
    ({"step": 99}, "step 100 is not one of the 3 declared steps"),
    ({"step": 1, "traffic": 60}, "traffic 60 is not what a Progressing rollout has"),
    ({"step_started": "yesterday"}, "step_started must be a Unix time"),
])
@pytest.mark.parametrize("live", [0, 50])
def test_an_invalid_state_keeps_the_live_canary_traffic(model: Model, raw: dict[str, Any], reason: str,
                                                        live: int) -> None:
    judged = judge_stored(model, {**state().to_json(), **raw}, lambda: LiveCanary("2", live))
    assert isinstance(judged, InvalidState)
    assert (judged.model, judged.version, judged.traffic) == (KEY, "2", live)
    assert reason in judged.reason
    assert judged.message.startswith(f"invalid rollout state: {judged.reason}; canary 2 held at {live}%")


@pytest.mark.parametrize("live", [LiveCanary(), LiveCanary("3", 40), LiveCanary("2", None)])
def test_when_the_cluster_cannot_tell_the_canary_is_held_at_0(model: Model, live: LiveCanary) -> None:
    judged = judge_stored(model, {**state().to_json(), "phase": "Bogus"}, lambda: live)
    assert isinstance(judged, InvalidState) and judged.traffic == 0


def test_an_unreadable_entry(model: Model) -> None:
    judged = judge_stored(model, None, lambda: LiveCanary("2", 0), unreadable="the stored value is not JSON")
    assert isinstance(judged, InvalidState) and (judged.traffic, judged.reason) == (0, "the stored value is not JSON")
    # of a canary the cluster serves but Git no longer names: Git's new canary starts afresh
    assert judge_stored(model, None, lambda: LiveCanary("1", 30), unreadable="not JSON") is None


def test_a_broken_entry_of_another_version_gives_way_to_gits_canary(model: Model) -> None:
    assert judge_stored(model, {**state(version="3").to_json(), "phase": "Bogus"}, never) is None
    # a parsed one is returned: the machine restarts it (Git moved on)
    other = state(version="3")
    assert judge_stored(model, other.to_json(), never) == other


@pytest.mark.parametrize(("live", "held"), [
    (LiveCanary("2", 0), 0), (LiveCanary("2", 50), 50), (LiveCanary("2", None), 0), (LiveCanary("2", 100), 100),
])
def test_a_missing_state_while_the_cluster_serves_the_canary_holds_it(model: Model, live: LiveCanary,
                                                                      held: int) -> None:
    judged = judge_stored(model, None, lambda: live)
    assert isinstance(judged, InvalidState) and judged.traffic == held
    assert "there is no stored state, but the cluster serves canary 2" in judged.reason


@pytest.mark.parametrize("live", [LiveCanary(), LiveCanary("3", 20), LiveCanary("2", 10)])
def test_a_missing_state_starts_fresh_when_that_moves_no_traffic(model: Model, live: LiveCanary) -> None:
    assert judge_stored(model, None, lambda: live) is None


def test_git_without_a_canary_holds_nothing(tmp_path: Path) -> None:
    model = load_desired(write_repo(tmp_path / "r", rollout=False), cached=False).spec.models[0]
    assert judge_stored(model, {"model": KEY, "phase": "Bogus"}, never) is None


# --- the live object -------------------------------------------------------------------------------

@pytest.mark.parametrize(("obj", "backend", "live"), [
    (isvc("2", 0), "kserve", LiveCanary("2", 0)),
    (isvc("2", 50), "kserve", LiveCanary("2", 50)),
    (isvc("2", 250), "kserve", LiveCanary("2", None)),
    (isvc("2", True), "kserve", LiveCanary("2", None)),
    (isvc("2", "50"), "kserve", LiveCanary("2", None)),
    (isvc("2", None), "kserve", LiveCanary("2", None)),
    (isvc(None, 50), "kserve", LiveCanary()),
    (None, "kserve", LiveCanary()),
    ({"metadata": "x"}, "kserve", LiveCanary()),
    ({"metadata": {"annotations": {"modelops.dev/canary-version": "2", "modelops.dev/canary-traffic": "40"}}},
     "kubernetes", LiveCanary("2", 40)),
    ({"metadata": {"annotations": {"modelops.dev/canary-version": "2", "modelops.dev/canary-traffic": "4e1"}}},
     "kubernetes", LiveCanary("2", None)),
    ({"metadata": {"annotations": {"modelops.dev/canary-version": "2", "modelops.dev/canary-traffic": "٤٠"}}},
     "kubernetes", LiveCanary("2", None)),
])
def test_live_canary_of(obj: Any, backend: str, live: LiveCanary) -> None:
    assert live_canary_of(obj, backend) == live


# --- repair -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "phase", "step", "traffic"), [
    ("abort", "Aborted", 0, 0), ("promote", "Succeeded", 2, 100), ("resume", "Progressing", 0, 10),
])
def test_repair_writes_a_fresh_valid_state(model: Model, command: str, phase: str, step: int, traffic: int) -> None:
    invalid = InvalidState(KEY, "2", "traffic 60 is not what a Progressing rollout has", 0)
    transition = repair(model, invalid, command, NOW, "alice")
    new = transition.state
    assert new is not None and (new.phase, new.step, new.traffic, new.version) == (phase, step, traffic, "2")
    assert fit_problem(new, model) is None
    assert "alice" in transition.reason and "the stored state was invalid (traffic 60" in transition.reason
    assert RolloutState.from_json(json.loads(json.dumps(new.to_json()))) == new


def test_pause_does_not_repair(model: Model) -> None:
    with pytest.raises(ValueError, match="abort, promote or resume it"):
        repair(model, InvalidState(KEY, "2", "bad", 0), "pause", NOW, "alice")


# --- the ConfigMap edge --------------------------------------------------------------------------------

def test_an_unreadable_entry_is_kept_not_dropped() -> None:
    cluster = FakeCluster([state()])
    assert cluster.cm is not None
    cluster.cm["data"].update({"team.other": "{not json", "team.third": "[1]",
                               "team.fourth": json.dumps({"model": "team/someone-else"})})
    stored = load_rollouts(cluster, "team")  # type: ignore[arg-type]
    assert set(stored.states) == {KEY}
    assert {k: why for k, (why, _raw) in stored.invalid.items()} == {
        "team/other": "the stored value is not JSON", "team/third": "the stored value is not a JSON object",
        "team/fourth": "the state stored under team.fourth names model team/someone-else"}
    data = stored.to_configmap()["data"]
    assert data["team.other"] == "{not json" and data["team.third"] == "[1]"  # written back as they were
    stored.states["team/other"] = state().to_json()
    assert json.loads(stored.to_configmap()["data"]["team.other"])["phase"] == "Progressing"  # a state replaces one


# --- what apply, status and the CLI make of it -----------------------------------------------------------

def corrupt(cluster: FakeCluster, **fields: Any) -> None:
    assert cluster.cm is not None
    cluster.cm["data"]["team.scorer"] = json.dumps({**state().to_json(), **fields})


def test_read_rollouts_holds_the_live_traffic(tmp_path: Path) -> None:
    cluster = FakeCluster([state()], live=isvc("2", 0))
    corrupt(cluster, traffic=250)
    found = read_rollouts(cluster, load_desired(write_repo(tmp_path / "repo"), cached=False))  # type: ignore[arg-type]
    assert found.traffic == {KEY: 0}
    assert found.notes[KEY].phase == "Invalid" and found.notes[KEY].message.startswith("invalid rollout state: ")
    assert KEY in found.invalid and KEY not in found.states


def test_read_rollouts_finds_the_live_canary_among_the_observed_objects(tmp_path: Path) -> None:
    """The objects a plan or a status has listed answer for the live canary: no GET of it."""
    cluster = FakeCluster([state()])  # its GET would say: no InferenceService
    corrupt(cluster, traffic=250)
    observed = {("serving.kserve.io", "InferenceService", "team", "scorer"): isvc("2", 30)}
    found = read_rollouts(cluster, load_desired(write_repo(tmp_path / "repo"), cached=False),  # type: ignore[arg-type]
                          live=observed)
    assert found.traffic == {KEY: 30} and KEY in found.invalid
    assert cluster.gets == 1  # the rollout ConfigMap only


def test_rollout_status_shows_the_invalid_state(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    repo = str(write_repo(tmp_path / "repo"))
    cluster = FakeCluster([state()], live=isvc("2", 0))
    corrupt(cluster, phase="Bogus")
    connected(monkeypatch, cluster)
    assert cli.main(["rollout", "status", repo]) == 0
    out = capsys.readouterr().out
    assert "Invalid" in out and 'invalid rollout state: phase must be one of' in out and "held at 0%" in out
    assert cli.main(["rollout", "status", repo, "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rollouts"]
    assert (row["phase"], row["traffic"], row["version"], row["step"]) == ("Invalid", 0, "2", None)


@pytest.mark.parametrize(("command", "phase", "traffic"), [
    ("abort", "Aborted", 0), ("promote", "Succeeded", 100), ("resume", "Progressing", 10),
])
def test_abort_promote_resume_repair_an_invalid_state(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      command: str, phase: str, traffic: int) -> None:
    repo = str(write_repo(tmp_path / "repo"))
    cluster = FakeCluster([state()], live=isvc("2", 0))
    corrupt(cluster, step=99)
    connected(monkeypatch, cluster)
    log = tmp_path / "audit.jsonl"
    assert cli.main(["rollout", command, "scorer", repo, "--as", "bob", "--audit-log", str(log)]) == 0
    stored = cluster.stored()
    assert (stored.phase, stored.traffic) == (phase, traffic)
    assert "the stored state was invalid (step 100 is not one of the 3 declared steps)" in stored.message
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["phase"] == {"from": "Invalid", "to": phase} and record["traffic"] == {"from": 0, "to": traffic}


def test_pause_of_an_invalid_state_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    repo = str(write_repo(tmp_path / "repo"))
    cluster = FakeCluster([state()], live=isvc("2", 0))
    corrupt(cluster, traffic=60)
    before = json.dumps(cluster.cm)
    connected(monkeypatch, cluster)
    assert cli.main(["rollout", "pause", "scorer", repo]) == 2
    assert "abort, promote or resume it" in capsys.readouterr().err
    assert json.dumps(cluster.cm) == before  # nothing written


# --- the controller's driver --------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.records: list[dict[str, Any]] = []
        self.invalid: list[tuple[str, bool]] = []

    def driver(self, cluster: FakeCluster, prometheus: Any = None) -> RolloutDriver:
        return RolloutDriver(cluster, "modelops-system", prometheus,  # type: ignore[arg-type]
                             record=lambda event, **f: self.records.append({"event": event, **f}),
                             event=lambda _m, reason, message, _w: self.events.append((reason, message)),
                             metric=lambda *_a: None, invalid_metric=lambda m, bad: self.invalid.append((m, bad)))


def test_the_driver_holds_an_invalid_state_and_reports_each_distinct_one_once(tmp_path: Path) -> None:
    desired = load_desired(write_repo(tmp_path / "repo"), cached=False)
    cluster = FakeCluster([state(phase="RolledBack", traffic=0)], live=isvc("2", 0))
    seen = Recorder()
    driver = seen.driver(cluster)
    assert driver.tick(desired) == {KEY: 0}
    corrupt(cluster, traffic=250)
    for _ in range(3):
        assert driver.tick(desired) == {KEY: 0}  # never the first step's 10%
    corrupt(cluster, phase="Bogus")
    assert driver.tick(desired) == {KEY: 0}
    assert cluster.cm is not None
    del cluster.cm["data"]["team.scorer"]  # the entry emptied: the cluster still serves canary 2 at 0%
    assert driver.tick(desired) == {KEY: 0}
    assert [reason for reason, _ in seen.events] == ["RolloutStateInvalid"] * 3
    assert [r["event"] for r in seen.records] == ["rollout-state-invalid"] * 3
    assert [r["traffic"] for r in seen.records] == [0, 0, 0]
    assert seen.invalid == [(KEY, True)] * 3
    assert driver.notes(desired)[KEY].startswith("invalid rollout state: there is no stored state")

    cluster.cm["data"]["team.scorer"] = json.dumps(state(phase="Aborted", traffic=0).to_json())  # a human repaired it
    assert driver.tick(desired) == {KEY: 0}
    assert seen.invalid[-1] == (KEY, False) and not driver.held


def test_the_driver_keeps_an_invalid_entry_when_it_writes_others(tmp_path: Path) -> None:
    desired = load_desired(write_repo(tmp_path / "repo"), cached=False)
    cluster = FakeCluster([state()], live=isvc("2", 50))
    cluster.cm["data"]["team.scorer"] = "{garbage"  # type: ignore[index]
    cluster.cm["data"]["team.gone"] = json.dumps(state().to_json() | {"model": "team/gone"})  # type: ignore[index]
    driver = Recorder().driver(cluster)
    assert driver.tick(desired) == {KEY: 50}  # the model that left the repo is dropped: a write
    assert cluster.cm is not None and cluster.cm["data"] == {"team.scorer": "{garbage"}


def analysed(tmp_path: Path) -> Any:
    """The test repo with an inline analysis check on the rollout."""
    root = write_repo(tmp_path / "repo")
    path = root / "scorer.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["rollout"]["analysis"] = {"checks": [{"name": "score", "query": "vector(1)", "min": 0.5}]}
    path.write_text(yaml.safe_dump(doc))
    return load_desired(root, cached=False)


class HangingPrometheus:
    """Answers nothing until released (bounded: the test releases it)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def query(self, expr: str) -> float | None:
        self.calls += 1
        self.release.wait(30)
        return 0.0


def test_a_hanging_prometheus_holds_only_the_step_and_not_the_tick(tmp_path: Path) -> None:
    desired = analysed(tmp_path)
    cluster = FakeCluster([state(step=0, traffic=10)], live=isvc("2", 10))
    prometheus = HangingPrometheus()
    driver = Recorder().driver(cluster, prometheus)
    assert driver.calls is not None
    driver.calls.deadline = 0.5
    try:
        for _ in range(3):
            started = time.monotonic()
            assert driver.tick(desired) == {KEY: 10}
            assert time.monotonic() - started < 3.0
            checks = driver.states[KEY].last_checks
            assert checks and all(c.ok is None for c in checks)
        messages = " ".join(c.message for c in driver.states[KEY].last_checks)
        assert "Prometheus has not answered the previous query yet" in messages
        assert prometheus.calls == 1  # not started again while the first hangs
    finally:
        prometheus.release.set()
        driver.close()


def test_the_first_tick_says_prometheus_did_not_answer_in_time(tmp_path: Path) -> None:
    desired = analysed(tmp_path)
    cluster = FakeCluster([state(step=0, traffic=10)], live=isvc("2", 10))
    prometheus = HangingPrometheus()
    driver = Recorder().driver(cluster, prometheus)
    assert driver.calls is not None
    driver.calls.deadline = 0.3
    try:
        driver.tick(desired)
        assert "Prometheus did not answer within 0.3s" in driver.states[KEY].message
    finally:
        prometheus.release.set()
        driver.close()
