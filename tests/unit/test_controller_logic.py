"""The controller's decisions without a cluster: when a plan may be written (new commit, drift
policy, a fight with another writer), and how its own writes' watch echoes are told apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.apply import ObjectResult
from agent.controller import Controller, RunConfig
from agent.controller._loop import _older
from agent.plan import Plan, build_plan, change
from agent.render import object_key


def cm(name: str, rv: str = "5", value: str = "a") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": value},
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": {"modelops.dev/target": "t"}, "annotations": {"modelops.dev/spec-hash": "h"}}}


def drift_plan(name: str = "x") -> Plan:
    c = change("update", cm(name, value="theirs"), cm(name))
    c.desired = cm(name)
    c.drift = {"data.k": "kubectl-edit"}
    return build_plan([c])


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    return Controller(RunConfig(repo="unused", watch_dir=tmp_path, http_addr=None), cluster=object())  # type: ignore[arg-type]


def metric(controller: Controller, text: str) -> float:
    lines = [line for line in controller.metrics.exposition().decode().splitlines() if line.startswith(text)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_new_commit_is_always_written(controller: Controller) -> None:
    controller.config.drift_policy = "detect"
    assert controller._gate(new_commit=True)(drift_plan())


def test_detect_reports_drift_and_writes_nothing(controller: Controller) -> None:
    controller.config.drift_policy = "detect"
    assert not controller._gate(new_commit=False)(drift_plan())
    assert metric(controller, 'modelops_agent_drift_events_total{policy="detect"}') == 1


def test_an_object_rewritten_again_and_again_is_healed_with_a_growing_delay(controller: Controller) -> None:
    gate = controller._gate(new_commit=False)
    assert all(gate(drift_plan()) for _ in range(Controller.FIGHT_HEALS))  # healed at once, 3 times
    assert not gate(drift_plan())  # the 4th within the window: back off
    fight = controller.fights[object_key(cm("x"))]
    assert fight.delay == 5.0 and fight.managers == "kubectl-edit"
    assert not gate(drift_plan())  # still backing off
    assert gate(drift_plan("other"))  # another object is not held back
    assert controller._fight_due() < float("inf")  # the loop wakes up to retry


def test_the_echo_of_our_own_write_triggers_nothing_but_a_foreign_change_does(controller: Controller) -> None:
    controller._keys = frozenset({object_key(cm("x"))})
    written = cm("x", rv="7")
    controller._wrote(ObjectResult(change("update", cm("x"), cm("x")), "applied", live=written))
    controller._on_watch("MODIFIED", object_key(written), cm("x", rv="7"))
    assert controller._queue.empty() and controller._written == {}
    controller._on_watch("MODIFIED", object_key(written), cm("x", rv="8", value="theirs"))
    assert controller._queue.get_nowait() == "watch"


class FakeCache:
    def __init__(self, objects: dict[Any, dict[str, Any]]) -> None:
        self._objects = objects

    def objects(self) -> dict[Any, dict[str, Any]]:
        return dict(self._objects)


def test_plans_see_our_write_until_the_cache_catches_up(controller: Controller) -> None:
    key = object_key(cm("x"))
    controller._wrote(ObjectResult(change("update", cm("x"), cm("x")), "applied", live=cm("x", rv="9", value="new")))
    assert controller._view(FakeCache({key: cm("x", rv="5")}))[key]["data"]["k"] == "new"  # type: ignore[arg-type]
    assert controller._view(FakeCache({key: cm("x", rv="12", value="later")}))[key]["data"]["k"] == "later"  # type: ignore[arg-type]
    assert controller._written == {}


def test_resource_versions_compare_as_numbers_only_when_they_are() -> None:
    assert _older(cm("x", rv="9"), cm("x", rv="10"))
    assert not _older(cm("x", rv="10"), cm("x", rv="9"))
    assert not _older(cm("x", rv="abc"), cm("x", rv="10"))
