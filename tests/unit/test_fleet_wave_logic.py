"""Waves across an environment's clusters (agent.controller._waves): pure and clocked, no cluster."""

from __future__ import annotations

import dataclasses

import pytest

from agent.controller import Progress, Stop, Wave, watched_models
from agent.desired import load_desired
from agent.spec import Canary, Model
from tests.unit.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "environments"


def production() -> tuple[Model, ...]:
    return load_desired(EXAMPLE, environment="production", resolve=False).spec.models


def canary(models: tuple[Model, ...], key_part: str, version: str) -> tuple[Model, ...]:
    return tuple(dataclasses.replace(m, canary=Canary(version, 10)) if key_part in m.key else m for m in models)


def test_a_changed_canary_of_a_model_with_a_rollout_is_watched() -> None:
    models = production()
    assert watched_models(models, models) == frozenset()
    new = canary(models, "fraud-scorer", "13")
    assert watched_models(models, new) == {m.key for m in new if "fraud-scorer" in m.key}
    # ranker has no rollout: its canary changes nothing the wave waits on
    assert watched_models(models, canary(models, "ranker", "4")) == frozenset()


def test_the_first_change_reaches_every_cluster_at_once() -> None:
    wave = Wave(["c1", "c2", "c3"], soak_seconds=60)
    assert wave.start("t1", frozenset())
    assert [wave.handed(c) for c in wave.clusters] == ["t1", "t1", "t1"]
    assert wave.waiting_on == ""
    assert not wave.start("t1", frozenset())  # the same change again starts nothing


def test_the_first_change_with_a_rollout_in_flight_starts_at_the_first_cluster() -> None:
    """An agent restarted while a canary rolls out: the later clusters wait for the first one's
    verdict (its stored rollout state), as for any change; nothing is handed them before."""
    wave = Wave(["c1", "c2"], soak_seconds=60)
    assert wave.start("t1", frozenset({"m"}))
    assert [wave.handed(c) for c in wave.clusters] == ["t1", ""]
    assert wave.update({"c1": Progress(applied="t1", phases={"m": "RolledBack"})}, 0) is not None
    assert [wave.handed(c) for c in wave.clusters] == ["t1", ""]


def test_a_change_with_a_rollout_waits_for_its_success_in_the_first_cluster() -> None:
    wave = Wave(["c1", "c2", "c3"], soak_seconds=60)
    wave.start("t1", frozenset())
    assert wave.start("t2", frozenset({"m"}))
    assert [wave.handed(c) for c in wave.clusters] == ["t2", "t1", "t1"]
    assert wave.update({"c1": Progress(applied="t1")}, 0) is None  # not applied yet
    assert wave.update({"c1": Progress(applied="t2", phases={"m": "Progressing"})}, 1) is None
    assert wave.waiting_on == "c1"
    assert wave.update({"c1": Progress(applied="t2", phases={"m": "Succeeded"})}, 2) is None
    assert [wave.handed(c) for c in wave.clusters] == ["t2", "t2", "t1"]
    # c2's success was seen once: the state going away later (Git took the canary) does not stall the wave
    wave.update({"c1": Progress(applied="t2"), "c2": Progress(applied="t2", phases={"m": "Succeeded"})}, 3)
    assert [wave.handed(c) for c in wave.clusters] == ["t2", "t2", "t2"]
    assert wave.waiting_on == ""


def test_a_failed_rollout_stops_the_wave_once() -> None:
    wave = Wave(["c1", "c2"], soak_seconds=0)
    wave.start("t1", frozenset())
    wave.start("t2", frozenset({"m"}))
    stop = wave.update({"c1": Progress(applied="t2", phases={"m": "RolledBack"})}, 5)
    assert stop == Stop("c1", "t2", "m", "RolledBack")
    assert wave.update({"c1": Progress(applied="t2", phases={"m": "Succeeded"})}, 6) is None  # said once
    assert [wave.handed(c) for c in wave.clusters] == ["t2", "t1"]
    # a later change starts a new wave; the cluster the failed one never reached keeps t1 until its turn
    wave.start("t3", frozenset({"m"}))
    assert [wave.handed(c) for c in wave.clusters] == ["t3", "t1"]
    wave.update({"c1": Progress(applied="t3", phases={"m": "Succeeded"})}, 7)
    assert [wave.handed(c) for c in wave.clusters] == ["t3", "t3"]


@pytest.mark.parametrize("reason", ["RolledBack", "Aborted"])
def test_both_failed_phases_stop(reason: str) -> None:
    wave = Wave(["c1", "c2"], soak_seconds=0)
    wave.start("t1", frozenset())
    wave.start("t2", frozenset({"a", "b"}))
    stop = wave.update({"c1": Progress(applied="t2", phases={"a": "Succeeded", "b": reason})}, 0)
    assert stop is not None and (stop.model, stop.reason) == ("b", reason)


def test_without_a_rollout_the_next_cluster_waits_the_soak_with_healthy_models() -> None:
    wave = Wave(["c1", "c2"], soak_seconds=30)
    wave.start("t1", frozenset())
    wave.start("t2", frozenset())
    wave.update({"c1": Progress(applied="t2", healthy=False)}, 100)  # applied at 100, not healthy yet
    assert wave.due(100) == 130
    wave.update({"c1": Progress(applied="t2", healthy=True)}, 129)
    assert wave.handed("c2") == "t1"
    wave.update({"c1": Progress(applied="t2", healthy=False)}, 131)  # soaked but unhealthy now
    assert wave.handed("c2") == "t1"
    wave.update({"c1": Progress(applied="t2", healthy=True)}, 131)
    assert wave.handed("c2") == "t2" and wave.due(131) is None


def test_a_single_cluster_environment_gets_every_change_at_once() -> None:
    wave = Wave(["only"], soak_seconds=3600)
    wave.start("t1", frozenset())
    wave.start("t2", frozenset({"m"}))
    assert wave.handed("only") == "t2" and wave.waiting_on == ""


def test_a_wave_needs_a_cluster() -> None:
    with pytest.raises(ValueError):
        Wave([], soak_seconds=0)


def test_an_unreachable_cluster_does_not_hold_the_wave() -> None:
    wave = Wave(["c1", "c2", "c3"], soak_seconds=0)
    wave.start("t1", frozenset())
    wave.start("t2", frozenset({"m"}))
    wave.update({"c1": Progress(applied="t1", reachable=False)}, 0)
    # c1 is handed t2 (it applies it once back); c2's rollout is the one judged now
    assert [wave.handed(c) for c in wave.clusters] == ["t2", "t2", "t1"] and wave.waiting_on == "c2"
    wave.update({"c1": Progress(applied="t1", reachable=False), "c2": Progress(applied="t2", phases={"m": "Succeeded"})}, 1)
    assert wave.handed("c3") == "t2"
