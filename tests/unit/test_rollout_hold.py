"""A rollout step that is not judged holds, and says why: the pure parts (the analysis' hold
reasons, the machine's hold and its healthy clock, describe, the stored format, the status
row), the controller's driver saying each hold once (log, Event, gauge) and saving it for
`agent rollout status`, and the metrics' numbering."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.controller._metrics import Metrics
from agent.controller._rollouts import RolloutDriver
from agent.engine import load_desired, rollout_status
from agent.rollout import (
    NO_PROMETHEUS,
    REQUESTS,
    CheckResult,
    Hold,
    Query,
    RolloutState,
    Unjudged,
    describe,
    judge,
    step,
    unjudged,
)
from tests.unit.test_rollout_cli import KEY, FakeCluster, connected, state, write_repo
from tests.unit.test_rollout_machine import OK, T0, model

ERRORS = Query("error-rate", "errors", None, 0.05, "rule")
P95 = Query("p95", "p95", None, 0.5, "check")
COUNT = Query(REQUESTS, "count", 10.0, None, "requests")


# --- why an analysis does not judge the step ------------------------------------------------------

@pytest.mark.parametrize(("values", "errors", "down", "expected"), [
    ({"error-rate": 0.01, "p95": 0.1, REQUESTS: 4.0}, {}, {}, Unjudged("requests", "4/10 requests")),
    ({"error-rate": 0.01, "p95": 0.1, REQUESTS: 9.97}, {}, {}, Unjudged("requests", "9/10 requests")),
    ({"error-rate": 0.01, "p95": 0.1}, {}, {}, Unjudged("requests", "0/10 requests (no data)")),
    ({"error-rate": 0.01, REQUESTS: 50.0}, {}, {}, Unjudged("no-data", "no data for p95")),
    ({"p95": 0.1, REQUESTS: 50.0}, {}, {}, Unjudged("no-data", "no data for error-rate")),
    ({"error-rate": float("-inf"), "p95": 0.1, REQUESTS: 50.0}, {}, {},
     Unjudged("not-judged", "error-rate -Inf is not a finite number")),
    ({"error-rate": 0.01, REQUESTS: 50.0}, {"p95": "query 'p95' returned a matrix"}, {},
     Unjudged("not-judged", "p95: query 'p95' returned a matrix")),
    ({}, {"error-rate": "POST http://prom:9090/api/v1/query (query 'x'): connection refused"},
     {"error-rate": "http://prom:9090: connection refused", "p95": "http://prom:9090: connection refused",
      REQUESTS: "http://prom:9090: connection refused"},
     Unjudged("prometheus", "Prometheus unreachable: http://prom:9090: connection refused")),
    ({}, {}, dict.fromkeys(("error-rate", "p95", REQUESTS), "Prometheus did not answer within 5s"),
     Unjudged("prometheus", "Prometheus did not answer within 5s")),
])
def test_why_a_step_is_not_judged(values: dict[str, float], errors: dict[str, str], down: dict[str, str],
                                  expected: Unjudged) -> None:
    checks = judge([ERRORS, P95, COUNT], values, errors, down)
    assert all(c.ok is None for c in checks if c.name in errors.keys() | down.keys())
    assert unjudged(checks) == expected


def test_judged_checks_do_not_hold() -> None:
    checks = judge([ERRORS, P95, COUNT], {"error-rate": 0.01, "p95": 0.1, REQUESTS: 50.0})
    assert unjudged(checks) is None
    assert unjudged(judge([ERRORS], {"error-rate": 0.5})) is None  # a failure is judged: it fails, not holds


def test_checks_made_by_hand_or_read_back_still_say_why() -> None:
    """The kind is not stored with the checks: a check read back from the store is still classed."""
    starved = CheckResult(REQUESTS, 3.0, None, "requests 3 < min 50 (waiting for data)")
    assert unjudged([starved]) == Unjudged("requests", "requests 3 < min 50 (waiting for data)")
    assert unjudged([CheckResult("p95", None, None, "p95: no data")]) == Unjudged("no-data", "no data for p95")


# --- the machine: a hold, and time not judged is not healthy time -------------------------------------

def started() -> RolloutState:
    s = step(model(), None, None, T0).state
    assert s is not None
    return s


def test_no_prometheus_holds_and_says_so_not_healthy() -> None:
    s = started()
    for now in (T0 + 15, T0 + 100, T0 + 179):
        t = step(model(), s, None, now)
        assert (t.kind, t.traffic) == ("waiting", 10)
        s = t.state
        assert s is not None
    assert s.hold == Hold("no-prometheus", NO_PROMETHEUS.reason, T0 + 15)  # since the first tick not judged
    line = describe(s, model(), now=T0 + 194)
    assert line == ("rollout in progress, step 1/4 (10%): not judged for 2m59s: no Prometheus configured "
                    "(agent run --prometheus-url)")
    assert "healthy" not in line


def test_a_quiet_canary_says_how_many_requests() -> None:
    checks = judge([ERRORS, COUNT], {"error-rate": 0.0, REQUESTS: 4.0})
    t = step(model(), started(), checks, T0 + 30)
    assert t.state is not None and t.state.hold is not None
    assert (t.state.hold.kind, t.state.hold.reason) == ("requests", "4/10 requests")
    assert t.reason == "not judged at step 1/4: 4/10 requests; holding 10%"
    assert describe(t.state, model(), now=T0 + 90) == "rollout in progress, step 1/4 (10%): not judged for 1m: " \
                                                      "4/10 requests"
    assert [c.value for c in t.state.last_checks] == [0.0, 4.0]  # the last values, for status


def test_time_not_judged_is_not_healthy_time() -> None:
    """Held for 3 minutes of a 1-minute interval, then judged healthy: the step has been healthy
    for 0s, not 3m, and advances one whole interval later."""
    s = started()
    s = step(model(), s, Unjudged("prometheus", "Prometheus unreachable: refused"), T0 + 10).state
    assert s is not None and s.hold is not None
    t = step(model(), s, OK, T0 + 180)
    assert (t.kind, t.traffic) == ("waiting", 10)
    assert t.state is not None and t.state.hold is None and t.state.healthy_since == T0 + 180
    assert t.reason == "0s of 1m healthy at step 1/4 (10%)"
    assert describe(t.state, model(), now=T0 + 200) == "rollout in progress, step 1/4 (10%), 20s of 1m healthy"
    assert step(model(), t.state, OK, T0 + 239).kind == "waiting"
    advanced = step(model(), t.state, OK, T0 + 240)
    assert (advanced.kind, advanced.traffic) == ("advanced", 25)
    assert advanced.state is not None and (advanced.state.hold, advanced.state.healthy_since) == (None, None)


def test_a_hold_keeps_its_start_while_its_reason_changes() -> None:
    s = started()
    s = step(model(), s, None, T0 + 10).state
    assert s is not None
    t = step(model(), s, [CheckResult(REQUESTS, 2.0, None, "x", "requests", "2/10 requests")], T0 + 20)
    assert t.state is not None and t.state.hold == Hold("requests", "2/10 requests", T0 + 10)


def test_a_failure_after_a_hold_restarts_the_step_without_the_hold() -> None:
    from agent.rollout import abort, pause
    s = step(model(), started(), None, T0 + 10).state
    assert s is not None
    for after in (step(model(), s, [CheckResult("error-rate", 0.5, False, "error-rate 0.5 > max 0.05")], T0 + 20).state,
                  pause(s, T0 + 20, "bob").state, abort(s, T0 + 20, "bob").state):
        assert after is not None and after.hold is None and after.healthy_since is None


def test_before_its_first_analysis_a_step_is_not_called_healthy() -> None:
    assert describe(started(), model(), now=T0 + 5) == "rollout in progress, step 1/4 (10%): waiting for its " \
                                                       "first analysis"


def test_the_hold_is_stored_and_read_back() -> None:
    s = step(model(), started(), None, T0 + 10).state
    assert s is not None
    raw = s.to_json()
    assert raw["hold"] == {"kind": "no-prometheus", "reason": NO_PROMETHEUS.reason, "since": T0 + 10}
    assert RolloutState.from_json(json.loads(json.dumps(raw))) == s
    healthy = step(model(), s, OK, T0 + 20).state
    assert healthy is not None and healthy.to_json()["healthy_since"] == T0 + 20
    assert RolloutState.from_json(healthy.to_json()) == healthy
    assert "hold" not in started().to_json() and "healthy_since" not in started().to_json()  # no new keys unless set


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("hold", {"kind": "bored", "reason": "x", "since": T0}, "hold kind must be one of"),
    ("hold", {"kind": "requests", "reason": "x"}, "hold must be an object with kind, reason and since"),
    ("hold", {"kind": "requests", "reason": "x", "since": T0, "extra": 1}, "hold must be an object"),
    ("hold", {"kind": "requests", "reason": 5, "since": T0}, "hold reason must be a string"),
    ("hold", {"kind": "requests", "reason": "x", "since": float("nan")}, "since must be a Unix time"),
    ("healthy_since", "soon", "healthy_since must be a Unix time"),
    ("healthy_since", float("inf"), "healthy_since must be a Unix time"),
])
def test_a_stored_hold_is_read_strictly(field: str, value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RolloutState.from_json({**started().to_json(), field: value})


# --- status ------------------------------------------------------------------------------------------

def test_status_json_says_why_the_step_holds(tmp_path: Path) -> None:
    desired = load_desired(write_repo(tmp_path / "repo"), cached=False)
    held = replace(state(step=0, traffic=10), hold=Hold("requests", "4/10 requests", T0),
                   last_checks=[CheckResult(REQUESTS, 4.0, None, "requests 4 < min 10 (waiting for data)")])
    row = rollout_status(held, desired, KEY, T0 + 179)
    assert row["hold"] == {"kind": "requests", "reason": "4/10 requests", "since": "1970-01-12T13:46:40Z",
                           "seconds": 179}
    assert row["message"] == "rollout in progress, step 1/3 (10%): not judged for 2m59s: 4/10 requests"
    assert row["checks"][0]["value"] == 4.0
    assert rollout_status(state(), desired, KEY, T0)["hold"] is None


def test_rollout_status_text_shows_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = write_repo(tmp_path / "repo")
    held = replace(state(step=0, traffic=10), hold=Hold("no-prometheus", NO_PROMETHEUS.reason, 1.0))
    connected(monkeypatch, FakeCluster([held]))
    assert cli.main(["rollout", "status", str(repo)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"step 1/3 \(10%\): not judged for [0-9hms]+: no Prometheus configured", out), out
    assert "healthy" not in out
    assert cli.main(["rollout", "status", str(repo), "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rollouts"]
    assert row["hold"]["kind"] == "no-prometheus" and row["hold"]["reason"].startswith("no Prometheus configured")


# --- the controller's driver ----------------------------------------------------------------------------

def analysed_repo(root: Path, min_requests: int = 10) -> Path:
    write_repo(root)
    path = root / "scorer.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["rollout"]["analysis"] = {"checks": [{"name": "score", "query": "vector(1)", "min": 0.5}],
                                          "minRequests": min_requests}
    path.write_text(yaml.safe_dump(doc))
    return root


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool]] = []
        self.held: list[tuple[str, str, bool]] = []
        self.steps: list[tuple[str, int]] = []

    def driver(self, cluster: FakeCluster, prometheus: Any = None) -> RolloutDriver:
        return RolloutDriver(cluster, "modelops-system", prometheus,  # type: ignore[arg-type]
                             record=lambda *_a, **_k: None,
                             event=lambda _m, reason, message, warning: self.events.append((reason, message, warning)),
                             metric=lambda m, _kind, step_, _traffic: self.steps.append((m, step_)),
                             held_metric=lambda m, kind, held: self.held.append((m, kind, held)))


class Answers:
    """A Prometheus whose answers the test sets: the request count, and the score."""

    def __init__(self, requests: float) -> None:
        self.requests = requests

    def query(self, expr: str) -> float | None:
        return self.requests if "increase(" in expr else 1.0


def test_without_prometheus_the_driver_warns_once_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    desired = load_desired(analysed_repo(tmp_path / "repo"), cached=False)
    cluster = FakeCluster()
    seen = Seen()
    driver = seen.driver(cluster)
    with caplog.at_level(logging.WARNING, logger="agent.controller.rollouts"):
        for _ in range(4):
            assert driver.tick(desired) == {KEY: 10}
            driver.publish_pending()  # after the pass: the model's namespace exists for its Event
    assert [(r, w) for r, _m, w in seen.events if r != "RolloutStarted"] == [("RolloutHeld", True)]
    [(_, message, _)] = [e for e in seen.events if e[0] == "RolloutHeld"]
    assert message.startswith("no Prometheus configured (agent run --prometheus-url)")
    assert seen.held == [(KEY, "no-prometheus", True)]
    assert sum("no Prometheus configured" in r.getMessage() for r in caplog.records) == 1
    stored = cluster.stored()  # saved, so `agent rollout status` can say it
    assert stored.hold is not None and stored.hold.kind == "no-prometheus"
    assert seen.steps == [(KEY, 1)]  # the started transition: step 1, as people count


def test_a_quiet_canary_is_said_once_per_step_and_cleared_when_judged(tmp_path: Path) -> None:
    desired = load_desired(analysed_repo(tmp_path / "repo"), cached=False)
    cluster = FakeCluster([state(step=0, traffic=10)])
    prometheus = Answers(4.0)
    seen = Seen()
    driver = seen.driver(cluster, prometheus)
    try:
        for _ in range(3):
            driver.tick(desired)
        prometheus.requests = 7.0
        driver.tick(desired)
        held = [m for r, m, _w in seen.events if r == "RolloutHeld"]
        assert held == ["rollout of 2 held at step 1/3 (10%): not judged: 4/10 requests"]
        stored = cluster.stored()
        assert stored.hold is not None and stored.hold.reason in ("4/10 requests", "7/10 requests")
        assert seen.held == [(KEY, "requests", True)]
        prometheus.requests = 50.0
        driver.tick(desired)
        assert seen.held[-1] == (KEY, "requests", False)
        stored = cluster.stored()
        assert stored.hold is None and stored.healthy_since is not None  # saved: the healthy clock restarts
    finally:
        driver.close()


# --- metrics -----------------------------------------------------------------------------------------

def test_the_held_gauge_and_the_step_numbering() -> None:
    metrics = Metrics(process=False)
    metrics.rollout("ns/m", "started", 1, 10)
    metrics.rollout_held("ns/m", "requests", True)
    text = metrics.exposition().decode()
    assert 'modelops_agent_rollout_step{model="ns/m"} 1.0' in text
    assert 'modelops_agent_rollout_held{model="ns/m",reason="requests"} 1.0' in text
    help_line = next(line for line in text.splitlines() if line.startswith("# HELP modelops_agent_rollout_step "))
    assert "counted from 1" in help_line
    with pytest.raises(ValueError, match="unknown hold reason"):
        metrics.rollout_held("ns/m", "bored", True)
