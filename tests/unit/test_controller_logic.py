"""The controller's parts without a cluster: the write gate (new commit, drift policy, a fight
with another writer; pure and clocked), the echo filter that tells our own writes' watch events
apart, the trigger queue and its timers, and leadership (the loop, not the election thread,
forgets what the previous leader wrote)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cache import EchoFilter, older
from agent.cluster import LeaseHeld
from agent.controller import Controller, RunConfig
from agent.controller._gate import FIGHT_HEALS, FIGHT_WINDOW, WriteGate
from agent.controller._leadership import Leadership
from agent.controller._triggers import Timers, TriggerQueue
from agent.plan import Plan, build_plan, change
from agent.render import object_key


def cm(name: str, rv: str = "5", value: str = "a") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": value},
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": {"modelops.dev/target": "t"}, "annotations": {"modelops.dev/spec-hash": "h"}}}


def drift_plan(name: str = "x") -> Plan:
    return build_plan([change("update", cm(name, value="theirs"), cm(name), drift={"data.k": "kubectl-edit"})])


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    return Controller(RunConfig(repo="unused", watch_dir=tmp_path, http_addr=None), cluster=object())  # type: ignore[arg-type]


def metric(controller: Controller, text: str) -> float:
    lines = [line for line in controller.metrics.exposition().decode().splitlines() if line.startswith(text)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


# --- the write gate ---------------------------------------------------------------------------
def test_a_new_commit_is_always_written() -> None:
    assert WriteGate("detect").allow(drift_plan(), new_commit=True, now=0.0)


def test_detect_reports_drift_and_writes_nothing(controller: Controller) -> None:
    controller.config.drift_policy = "detect"
    gate = WriteGate(controller.config.drift_policy, controller.metrics.drift)  # as the controller wires it
    assert not gate.allow(drift_plan(), new_commit=False, now=0.0)
    assert metric(controller, 'modelops_agent_drift_events_total{policy="detect"}') == 1


def test_an_object_rewritten_again_and_again_is_healed_with_a_growing_delay() -> None:
    gate = WriteGate("heal")
    assert all(gate.allow(drift_plan(), False, now=float(t)) for t in range(FIGHT_HEALS))  # healed at once, 3 times
    assert not gate.allow(drift_plan(), False, now=10.0)  # the 4th within the window: back off
    fight = gate.fights[object_key(cm("x"))]
    assert fight.delay == 5.0 and fight.managers == "kubectl-edit" and fight.until == 15.0
    assert not gate.allow(drift_plan(), False, now=14.9)  # still backing off
    assert gate.allow(drift_plan("other"), False, now=14.9)  # another object is not held back
    assert gate.due(14.9) == 15.0  # the loop wakes up to retry
    assert gate.due(15.0) == float("inf")
    assert not gate.allow(drift_plan(), False, now=15.0)  # healed again within the window: a longer delay
    assert fight.delay == 10.0 and gate.due(15.0) == 25.0


def test_heals_spread_over_more_than_the_window_are_no_fight() -> None:
    gate = WriteGate("heal")
    assert all(gate.allow(drift_plan(), False, now=t * FIGHT_WINDOW / 2) for t in range(10))
    assert gate.due(1000.0) == float("inf")


def test_the_controller_wires_the_gate_to_its_drift_policy(controller: Controller) -> None:
    assert controller.gate.policy == "heal"
    assert controller.gate.due(time.monotonic()) == float("inf")


# --- the echo filter --------------------------------------------------------------------------
def test_the_echo_of_our_own_write_triggers_nothing_but_a_foreign_change_does() -> None:
    changes: list[str] = []
    echo = EchoFilter(lambda: changes.append("watch"))
    echo.follow(frozenset({object_key(cm("x"))}))
    written = cm("x", rv="7")
    echo.wrote(written)
    echo.on_watch("MODIFIED", object_key(written), cm("x", rv="7"))
    assert changes == [] and echo.pending == 0
    echo.on_watch("MODIFIED", object_key(written), cm("x", rv="8", value="theirs"))
    assert changes == ["watch"]
    echo.on_watch("MODIFIED", object_key(cm("y")), cm("y", rv="9"))  # not ours
    assert changes == ["watch"]


def test_the_controller_queues_a_watch_trigger_for_a_foreign_change(controller: Controller) -> None:
    echo = controller.live.echo
    echo.follow(frozenset({object_key(cm("x"))}))
    echo.on_watch("MODIFIED", object_key(cm("x")), cm("x", rv="8", value="theirs"))
    assert controller.triggers.take(0) == "watch"


def test_plans_see_our_write_until_the_cache_catches_up() -> None:
    key = object_key(cm("x"))
    echo = EchoFilter(lambda: None)
    echo.wrote(cm("x", rv="9", value="new"))
    assert echo.view({key: cm("x", rv="5")})[key]["data"]["k"] == "new"
    assert echo.view({key: cm("x", rv="12", value="later")})[key]["data"]["k"] == "later"
    assert echo.pending == 0


def test_a_deleted_object_is_no_longer_laid_over_the_cache() -> None:
    key = object_key(cm("x"))
    echo = EchoFilter(lambda: None)
    echo.wrote(cm("x", rv="9", value="new"))
    echo.deleted(key)
    assert echo.view({}) == {} and key not in echo.view({})


def test_resource_versions_compare_as_numbers_only_when_they_are() -> None:
    assert older(cm("x", rv="9"), cm("x", rv="10"))
    assert not older(cm("x", rv="10"), cm("x", rv="9"))
    assert not older(cm("x", rv="abc"), cm("x", rv="10"))


# --- the trigger queue and its timers ----------------------------------------------------------
def test_triggers_are_coalesced_and_the_depth_reported() -> None:
    depths: list[int] = []
    triggers = TriggerQueue(depths.append)
    for trigger in ("watch", "watch", "webhook", "watch"):
        triggers.request(trigger)  # type: ignore[arg-type]
    assert depths == [1, 2]
    assert triggers.take(0) == "watch"
    triggers.request("watch")  # taken: may wait again
    assert [triggers.take(0), triggers.take(0)] == ["webhook", "watch"]
    assert triggers.take(0) is None and triggers.empty()
    assert depths == [1, 2, 1, 2, 1, 0]


def test_wake_ends_a_wait_at_once() -> None:
    triggers = TriggerQueue()
    threading.Timer(0.05, triggers.wake).start()
    started = time.monotonic()
    assert triggers.take(30) is None
    assert time.monotonic() - started < 10


def test_timers_say_how_long_to_wait_and_which_fired() -> None:
    timers = Timers(resync=600.0, now=100.0)
    assert timers.wait(100.0) == 0.0 and timers.fired(100.0) == "poll"  # the first poll at once
    timers.polled(100.0, None, interval=60.0)
    assert 154.0 <= timers.poll <= 166.0  # jittered by 10 %
    timers.polled(100.0, 2.0, interval=60.0)  # a backoff after a failed fetch
    assert timers.poll == 102.0
    timers.polled(100.0, None, interval=1000.0)
    assert timers.wait(100.0) == 600.0 and timers.fired(700.0) == "resync"
    assert timers.wait(100.0, 130.0) == 30.0  # a fight's end
    timers.follow_registry(True, 300.0, now=100.0)
    timers.follow_registry(True, 300.0, now=200.0)  # a running timer is kept
    assert timers.registry == 400.0 and timers.fired(450.0) == "registry"
    timers.rollout = 420.0
    assert timers.fired(450.0) == "rollout"
    timers.follow_registry(False, 300.0, now=200.0)
    assert timers.registry == float("inf")


# --- leadership ---------------------------------------------------------------------------------
class FakeLease:
    held = threading.Event()

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.name = "fake"
        self.lost = ""

    def acquire(self) -> None:
        if FakeLease.held.is_set():
            raise LeaseHeld("t", "another", 0.0, self.name)
        FakeLease.instance = self

    def release(self) -> None:
        pass

    instance: FakeLease | None = None


def test_on_losing_the_lease_the_loop_forgets_what_it_read_not_the_election_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.controller._leadership.TargetLease", FakeLease)
    config = RunConfig(repo="unused", watch_dir=tmp_path, http_addr=None, leader_elect=True, lease_duration=1)
    controller = Controller(config, cluster=object())  # type: ignore[arg-type]
    leadership = controller.leadership
    try:
        controller.may_write("t")  # starts the election
        assert leadership.leading.wait(5) and controller.triggers.take(5) == "resync"
        assert controller.may_write("t")  # the change is taken: state forgotten once
        inventory = object()
        controller.inventory = inventory  # type: ignore[assignment]
        controller.rollouts.target = "t"
        FakeLease.held.set()  # another takes over
        assert FakeLease.instance is not None
        FakeLease.instance.lost = "renewal failed"
        assert wait_for(lambda: not leadership.leading.is_set())
        assert controller.inventory is inventory and controller.rollouts.target == "t"  # the elector left them
        assert not controller.may_write("t")
        assert controller.inventory is None and controller.rollouts.target == ""  # the loop cleared them
    finally:
        controller.stop()
        leadership.close()
        FakeLease.held.clear()


def wait_for(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_leadership_exposes_only_its_events() -> None:
    stop = threading.Event()
    leadership = Leadership(object(), "ns", "me", duration=1, name=None, stop=stop,  # type: ignore[arg-type]
                            on_leading=lambda _l: None, on_gained=lambda: None)
    assert not leadership.is_leader() and not leadership.take_change() and leadership.lease is None
    leadership.changed.set()
    assert leadership.take_change() and not leadership.take_change()
