"""The rollout state machine (#11): pure transitions from Git's model, the stored state, the
judged checks and the time passed in."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from agent.rollout import (
    HISTORY_LIMIT,
    CheckResult,
    RolloutState,
    abort,
    describe,
    pause,
    promote,
    resume,
    start,
    step,
    traffic_override,
    with_outcome_written,
)
from agent.spec import Analysis, Canary, Model, ModelVersion, Rollout

T0 = 1_000_000.0
OK = [CheckResult("error-rate", 0.01, True, "error-rate 0.01 ok (max 0.05)")]
BAD = [CheckResult("error-rate", 0.12, False, "error-rate 0.12 > max 0.05")]
NO_DATA = [CheckResult("requests", 3.0, None, "requests 3 < min 50 (waiting for data)")]


def model(
    *, canary: str | None = "13", stable: str = "12", strategy: str = "canary", steps: tuple[int, ...] = (10, 25, 50, 100),
    max_failed: int = 1, rollout: bool = True,
) -> Model:
    versions = {v: ModelVersion(v, f"s3://m/{v}") for v in ("11", "12", "13", "14")}
    ro = Rollout(
        strategy=strategy,  # type: ignore[arg-type]
        steps=steps if strategy == "canary" else (), interval="1m", interval_seconds=60.0,
        analysis=Analysis(rules=("error-rate",)), max_failed_checks=max_failed,
        scale_down_delay="10m", scale_down_delay_seconds=600.0,
    )
    return Model(
        name="fraud", namespace="ml", format="sklearn", versions=versions, stable=stable, backend="kserve",
        stage="production", canary=Canary(canary, 10) if canary else None, rollout=ro if rollout else None,
    )


def run(m: Model, checks: list[CheckResult] | None, times: list[float]) -> tuple[list[str], list[int | None], RolloutState | None]:
    """Step `m` at each time from no state; kinds and traffic of each transition."""
    state: RolloutState | None = None
    kinds, traffic = [], []
    for now in times:
        t = step(m, state, checks, now)
        kinds.append(t.kind)
        traffic.append(t.traffic)
        state = t.state
    return kinds, traffic, state


# --- canary ----------------------------------------------------------------------------------

def test_a_healthy_canary_goes_through_every_step_one_interval_each() -> None:
    times = [T0 + 60 * i for i in range(5)] + [T0 + 60 * 4 + 1]
    kinds, traffic, state = run(model(), OK, times)
    assert kinds == ["started", "advanced", "advanced", "advanced", "succeeded", "waiting"]
    assert traffic == [10, 25, 50, 100, 100, 100]
    assert state is not None and state.phase == "Succeeded"
    assert [h["to"] for h in state.history] == ["Progressing"] * 4 + ["Succeeded"]
    assert [h["kind"] for h in state.history] == ["started", "advanced", "advanced", "advanced", "succeeded"]


def test_a_step_waits_until_its_interval_is_over() -> None:
    m = model()
    s = step(m, None, None, T0).state
    assert s is not None
    t = step(m, s, OK, T0 + 40)
    assert (t.kind, t.traffic) == ("waiting", 10)
    assert t.reason == "40s of 1m healthy at step 1/4 (10%)"
    assert t.state is not None and t.state.history == s.history  # waiting is not a transition worth a record
    assert step(m, t.state, OK, T0 + 60).kind == "advanced"


@pytest.mark.parametrize(("max_failed", "expected"), [
    (1, ["started", "rolled-back"]),
    (2, ["started", "check-failed", "rolled-back"]),
    (3, ["started", "check-failed", "check-failed", "rolled-back"]),
])
def test_an_unhealthy_check_rolls_back_after_max_failed_checks(max_failed: int, expected: list[str]) -> None:
    kinds, traffic, state = run(model(max_failed=max_failed), BAD, [T0 + i for i in range(max_failed + 1)])
    assert kinds == expected
    assert traffic[-1] == 0 and all(t == 10 for t in traffic[:-1])
    assert state is not None and state.phase == "RolledBack" and state.failed_checks == max_failed
    assert state.message == "rolled back at step 1/4: error-rate 0.12 > max 0.05"
    assert describe(state, model()) == "rolled back at step 1/4: error-rate 0.12 > max 0.05"


def test_a_failed_check_restarts_the_step_timer_and_failures_accumulate_across_steps() -> None:
    m = model(max_failed=2)
    s = step(m, None, None, T0).state
    t = step(m, s, BAD, T0 + 50)
    assert t.kind == "check-failed" and t.state is not None and t.state.step_started == T0 + 50
    assert step(m, t.state, OK, T0 + 100).kind == "waiting"  # 50s since the failure
    t = step(m, t.state, OK, T0 + 110)
    assert (t.kind, t.traffic) == ("advanced", 25)
    t = step(m, t.state, BAD, T0 + 120)
    assert (t.kind, t.traffic) == ("rolled-back", 0)


def test_rolled_back_stays_at_zero_until_git_changes() -> None:
    m = model()
    s = step(m, None, None, T0).state
    s = step(m, s, BAD, T0 + 1).state
    for checks in (OK, BAD, None):
        t = step(m, s, checks, T0 + 3600)
        assert (t.kind, t.traffic) == ("waiting", 0)
        assert t.state is not None and t.state.phase == "RolledBack" and len(t.state.history) == 2
    assert step(model(canary=None), s, None, T0 + 2).kind == "reset"
    t = step(model(canary="14"), s, None, T0 + 2)
    assert (t.kind, t.traffic) == ("started", 10)
    assert t.state is not None and t.state.version == "14" and t.state.phase == "Progressing"


def test_no_data_never_advances() -> None:
    kinds, traffic, state = run(model(), NO_DATA, [T0 + 600 * i for i in range(10)])
    assert kinds == ["started"] + ["waiting"] * 9 and set(traffic) == {10}
    assert state is not None and state.step == 0 and state.failed_checks == 0
    assert "requests 3 < min 50" in state.message


def test_some_checks_without_data_hold_the_step_even_if_others_are_fine() -> None:
    m = model()
    s = step(m, None, None, T0).state
    t = step(m, s, [*OK, CheckResult("p95", None, None, "p95: no data (waiting for data)")], T0 + 3600)
    assert (t.kind, t.traffic) == ("waiting", 10)


def test_prometheus_down_neither_fails_nor_advances() -> None:
    kinds, traffic, state = run(model(), None, [T0 + 600 * i for i in range(10)])
    assert kinds == ["started"] + ["waiting"] * 9 and set(traffic) == {10}
    assert state is not None and state.failed_checks == 0 and state.step == 0
    assert state.message == "not judged at step 1/4: no Prometheus configured (agent run --prometheus-url); holding 10%"
    assert state.hold is not None and (state.hold.kind, state.hold.since) == ("no-prometheus", T0 + 600)


def test_no_analysis_advances_on_time() -> None:
    kinds, _, _ = run(model(steps=(50, 100)), [], [T0, T0 + 60, T0 + 120])
    assert kinds == ["started", "advanced", "succeeded"]


def test_git_naming_another_canary_version_restarts() -> None:
    s = step(model(), None, None, T0).state
    s = step(model(), s, OK, T0 + 60).state
    assert s is not None and s.traffic == 25
    t = step(model(canary="14"), s, OK, T0 + 70)
    assert (t.kind, t.traffic) == ("started", 10)
    assert t.state is not None and (t.state.version, t.state.step, t.state.step_started) == ("14", 0, T0 + 70)
    assert "Git names canary 14 instead of 13" in t.reason


@pytest.mark.parametrize("git", [model(canary=None), model(rollout=False)])
def test_canary_or_rollout_removed_resets(git: Model) -> None:
    s = step(model(), None, None, T0).state
    t = step(git, s, OK, T0 + 1)
    assert (t.kind, t.state, t.traffic) == ("reset", None, None)


def test_version_made_stable_finishes() -> None:
    s = run(model(), OK, [T0 + 60 * i for i in range(5)])[2]
    assert s is not None and s.phase == "Succeeded"
    t = step(model(canary=None, stable="13"), s, None, T0 + 1000)
    assert (t.kind, t.state, t.traffic) == ("finished", None, None)


def test_nothing_to_track_is_idle() -> None:
    assert step(model(canary=None), None, None, T0) == step(model(rollout=False), None, None, T0)
    assert step(model(rollout=False), None, None, T0).kind == "idle"
    assert traffic_override(None) is None


def test_step_does_not_mutate_the_state_it_is_given() -> None:
    s = start(model(), T0)
    before = s.to_json()
    step(model(), s, BAD, T0 + 60)
    step(model(), s, OK, T0 + 60)
    assert s.to_json() == before


def test_a_state_of_another_model_is_refused() -> None:
    s = replace(start(model(), T0), model="ml/other")
    with pytest.raises(ValueError, match="ml/other"):
        step(model(), s, OK, T0)


def test_history_is_bounded() -> None:
    m = model(max_failed=1000)
    s = step(m, None, None, T0).state
    for i in range(120):
        s = step(m, s, BAD, T0 + i).state
    assert s is not None and len(s.history) == HISTORY_LIMIT
    assert s.history[-1]["reason"].startswith("check failed at step 1/4 (120/1000)")


# --- human overrides -------------------------------------------------------------------------

def test_abort_takes_all_traffic_away_until_git_changes() -> None:
    s = step(model(), None, None, T0).state
    s = step(model(), s, OK, T0 + 60).state
    assert s is not None
    t = abort(s, T0 + 70, "alice")
    assert (t.kind, t.traffic, t.reason) == ("aborted", 0, "aborted by alice at step 2")
    assert t.state is not None and t.state.phase == "Aborted" and t.state.history[-1]["from"] == "Progressing"
    assert step(model(), t.state, OK, T0 + 1000).traffic == 0
    assert step(model(canary="14"), t.state, OK, T0 + 1000).kind == "started"


def test_promote_skips_to_succeeded_at_100() -> None:
    s = step(model(), None, None, T0).state
    assert s is not None
    t = promote(s, model(), T0 + 5, "bob")
    assert (t.kind, t.traffic, t.reason) == ("promoted", 100, "promoted by bob at step 1/4")
    assert t.state is not None and (t.state.phase, t.state.step) == ("Succeeded", 3)
    assert describe(t.state, model()) == "succeeded, waiting for Git to make 13 stable"
    assert step(model(), t.state, BAD, T0 + 10).traffic == 100
    assert step(model(stable="13", canary=None), t.state, None, T0 + 20).kind == "finished"


def test_pause_holds_the_step_and_its_traffic_even_through_failing_checks() -> None:
    s = step(model(), None, None, T0).state
    s = step(model(), s, OK, T0 + 60).state  # step 2, 25%
    assert s is not None
    t = pause(s, T0 + 70, "alice (checking dashboards)")
    assert (t.kind, t.traffic) == ("paused", 25)
    assert t.reason == "paused by alice (checking dashboards) at step 2 (25%)"
    paused = t.state
    assert paused is not None and paused.phase == "Paused" and paused.history[-1]["to"] == "Paused"
    for checks in (OK, BAD, None):  # no advance, no rollback, however long
        held = step(model(), paused, checks, T0 + 10_000)
        assert (held.kind, held.traffic, held.state) == ("waiting", 25, paused)
    assert describe(paused, model()).startswith("paused at step 2/4 (25%)")
    assert step(model(canary="14"), paused, OK, T0 + 10_000).kind == "started"  # Git still wins
    assert abort(paused, T0 + 80, "bob").traffic == 0  # a paused canary can still be stopped


def test_resume_restarts_the_steps_interval() -> None:
    s = step(model(), None, None, T0).state
    assert s is not None
    paused = pause(s, T0 + 50, "alice").state
    assert paused is not None
    t = resume(paused, T0 + 500, "alice")
    assert (t.kind, t.traffic, t.reason) == ("resumed", 10, "resumed by alice at step 1 (10%)")
    resumed = t.state
    assert resumed is not None and (resumed.phase, resumed.step_started) == ("Progressing", T0 + 500)
    assert step(model(), resumed, OK, T0 + 530).kind == "waiting"  # healthy again for a whole interval first
    assert step(model(), resumed, OK, T0 + 560).kind == "advanced"


def test_only_a_progressing_rollout_pauses_and_only_a_paused_one_resumes() -> None:
    s = step(model(), None, None, T0).state
    assert s is not None
    done = promote(s, model(), T0 + 1, "bob").state
    assert done is not None
    with pytest.raises(ValueError, match="Succeeded: only a progressing rollout can pause"):
        pause(done, T0 + 2, "alice")
    with pytest.raises(ValueError, match="Progressing, not Paused"):
        resume(s, T0 + 2, "alice")


def test_outcome_written_is_kept_and_cleared_by_a_new_rollout() -> None:
    s = with_outcome_written(start(model(), T0))
    assert s.outcome_written
    assert step(model(), s, OK, T0 + 1).state.outcome_written  # type: ignore[union-attr]
    assert not step(model(canary="14"), s, OK, T0 + 1).state.outcome_written  # type: ignore[union-attr]


# --- blue-green ------------------------------------------------------------------------------

def test_blue_green_previews_then_switches_at_once() -> None:
    m = model(strategy="blueGreen")
    kinds, traffic, state = run(m, OK, [T0, T0 + 30, T0 + 60, T0 + 120])
    assert kinds == ["started", "waiting", "switched", "waiting"]
    assert traffic == [0, 0, 100, 100]
    assert state is not None and (state.phase, state.step, state.step_started) == ("Succeeded", 1, T0 + 60)
    assert describe(state, m) == "switched, waiting for Git to make 13 stable"


def test_blue_green_preview_failure_rolls_back() -> None:
    kinds, traffic, state = run(model(strategy="blueGreen"), BAD, [T0, T0 + 30])
    assert kinds == ["started", "rolled-back"] and traffic == [0, 0]
    assert state is not None and state.message == "rolled back in preview: error-rate 0.12 > max 0.05"


def test_blue_green_failure_within_scale_down_delay_switches_back() -> None:
    m = model(strategy="blueGreen", max_failed=2)
    s = run(m, OK, [T0, T0 + 60])[2]
    t = step(m, s, BAD, T0 + 120)
    assert (t.kind, t.traffic) == ("check-failed", 100)
    assert t.state is not None and t.state.step_started == T0 + 60  # still the switch time
    t = step(m, t.state, BAD, T0 + 180)
    assert (t.kind, t.traffic) == ("rolled-back", 0)
    assert t.reason == "rolled back after the switch: error-rate 0.12 > max 0.05"


def test_blue_green_failure_after_scale_down_delay_is_not_judged() -> None:
    m = model(strategy="blueGreen")
    s = run(m, OK, [T0, T0 + 60])[2]
    t = step(m, s, BAD, T0 + 60 + 600)
    assert (t.kind, t.traffic) == ("waiting", 100)


def test_strategy_changed_in_git_restarts() -> None:
    s = start(model(), T0)
    t = step(model(strategy="blueGreen"), s, OK, T0 + 1)
    assert (t.kind, t.traffic) == ("started", 0)


# --- describe --------------------------------------------------------------------------------

def test_describe_progress() -> None:
    m = model()
    s = run(m, OK, [T0, T0 + 60])[2]
    assert s is not None
    assert describe(s, m, now=T0 + 100) == "rollout in progress, step 2/4 (25%), 40s of 1m healthy"
    assert describe(s, m).startswith("rollout in progress, step 2/4 (25%): healthy for 1m at step 1/4")


# --- JSON ------------------------------------------------------------------------------------

def test_json_round_trip() -> None:
    m = model(max_failed=1000)
    s = step(m, None, None, T0).state
    for i in range(60):
        s = step(m, s, BAD, T0 + i).state
    assert s is not None
    s = replace(s, last_checks=[
        CheckResult("p95", math.inf, False, "p95 inf > max 0.5"), CheckResult("requests", None, None, "no data"),
    ])
    data = json.loads(json.dumps(s.to_json(), allow_nan=False))
    back = RolloutState.from_json(data)
    assert back == s and len(back.history) == HISTORY_LIMIT
    assert RolloutState.from_json(with_outcome_written(s).to_json()).outcome_written


def test_json_minimal_defaults() -> None:
    data = start(model(), T0).to_json()
    for key in ("failed_checks", "last_checks", "message", "history", "outcome_written"):
        del data[key]
    assert RolloutState.from_json(data) == start(model(), T0)


def _good() -> dict[str, Any]:
    s = step(model(), None, None, T0).state
    assert s is not None
    return replace(s, last_checks=list(OK)).to_json()


@pytest.mark.parametrize("garbage", [
    None, [], "state", {},
    {**_good(), "phase": "Exploded"},
    {**_good(), "strategy": "yolo"},
    {**_good(), "traffic": 101},
    {**_good(), "traffic": -1},
    {**_good(), "traffic": True},
    {**_good(), "traffic": "10"},
    {**_good(), "step": 1.5},
    {**_good(), "step_started": "yesterday"},
    {**_good(), "step_started": float("nan")},
    {**_good(), "model": "fraud"},
    {**_good(), "version": ""},
    {**_good(), "surprise": 1},
    {**_good(), "history": {}},
    {**_good(), "history": [{"at": 1}]},
    {**_good(), "history": [{"at": "x", "to": "Progressing", "reason": ""}]},
    {**_good(), "history": [{"at": 1, "to": "Progressing", "reason": "", "nested": {}}]},
    {**_good(), "last_checks": [{"name": "x"}]},
    {**_good(), "last_checks": [{"name": "x", "value": "high", "ok": True, "message": ""}]},
    {**_good(), "last_checks": [{"name": "x", "value": 1, "ok": "yes", "message": ""}]},
    {**_good(), "outcome_written": "no"},
    {**_good(), "failed_checks": -1},
    {**_good(), "strategy": "blueGreen", "step": 2},
    {k: v for k, v in _good().items() if k != "version"},
])
def test_from_json_rejects_garbage(garbage: Any) -> None:
    with pytest.raises(ValueError, match="rollout state"):
        RolloutState.from_json(garbage)


def test_transitions_are_json_serializable_states() -> None:
    _, _, s = run(model(), OK, [T0 + 60 * i for i in range(5)])
    assert s is not None
    json.dumps(s.to_json(), allow_nan=False)
