"""`agent status` without a cluster: what --watch counts as a change, the watch loop (prints on a
change only, stops when told, keeps going when the cluster does not answer), the last-sync mark,
a rollout that ended badly, and the target an invalid checkout still names. The same on the
local cluster: tests/integration/test_status_history.py."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from agent.cli._status_watch import Taken, fingerprint, watch
from agent.cluster import LAST_SYNC, ClusterError, sync_mark
from agent.engine import ended_badly, last_sync, status_ok
from agent.errors import AgentError, ValidationFailed
from tests.unit.conftest import MODEL, loads, repo, t


def doc(health: str = "Healthy", since: int = 3, message: str = "rollout in progress, step 1/3 (10%), 40s of 1m healthy",
        age: int = 5) -> dict[str, Any]:
    return {"target": "ml", "lastSync": {"commit": "a" * 40, "ageSeconds": age},
            "models": [{"namespace": "fraud", "name": "scorer", "synced": True, "health": health,
                        "rollout": {"sinceSeconds": since, "message": message}}]}


def test_ages_and_durations_are_no_change_but_health_is() -> None:
    assert fingerprint(doc()) == fingerprint(doc(since=90, age=65,
                                                 message="rollout in progress, step 1/3 (10%), 1m30s of 1m healthy"))
    assert fingerprint(doc()) != fingerprint(doc(health="Degraded"))
    assert fingerprint(doc()) != fingerprint(doc(message="rollout in progress, step 2/3 (50%), 4s of 1m healthy"))


def test_watch_shows_a_status_then_each_change_and_stops_when_told() -> None:
    stop = threading.Event()
    unreachable = ClusterError(0, "the API server at https://x is unreachable")
    sequence = [doc(), doc(since=9), unreachable, unreachable, AgentError("the checkout went away"),
                doc(health="Degraded"), doc(health="Degraded")]
    shown: list[str] = []
    warned: list[str] = []

    def once() -> Taken:
        item = sequence.pop(0) if sequence else doc(health="Degraded")
        if not sequence:
            stop.set()
        if isinstance(item, Exception):
            raise item
        return Taken(item, 0)

    started = time.monotonic()
    assert watch(once, lambda taken: shown.append(taken.document["models"][0]["health"]), interval=0.01,
                 stop=stop, warn=warned.append) == 0
    assert time.monotonic() - started < 5
    assert shown == ["Healthy", "Degraded"]
    assert warned == [f"{unreachable}; trying again every 0.01s",  # once, not per tick
                      "the checkout went away; trying again every 0.01s"]


def test_watch_ends_at_once_when_the_first_status_cannot_be_taken() -> None:
    def once() -> Taken:
        raise AgentError("no model matches --model nosuch in the repo")

    with pytest.raises(AgentError, match="no model matches"):
        watch(once, lambda taken: None, interval=0.01, stop=threading.Event())


def test_the_last_sync_mark_reads_back_with_its_age() -> None:
    mark = sync_mark("a" * 40, "controller", "https://forge.example/ml.git@main", when=1_000_000.0)
    read = last_sync({LAST_SYNC: mark}, now=1_000_090.0)
    assert read == {"commit": "a" * 40, "time": "1970-01-12T13:46:40Z", "by": "controller",
                    "source": "https://forge.example/ml.git@main", "ageSeconds": 90}
    for bad in ("not json", "[1]", json.dumps({"commit": "x"}), json.dumps({"time": "yesterday"})):
        assert last_sync({LAST_SYNC: bad}, now=0) is None
    assert last_sync({}, now=0) is None


def test_a_rollout_that_ended_badly_reads_as_one() -> None:
    assert ended_badly({"message": "rolled back at step 1/3: error-rate 0.2 > 0.05"}) == \
        "rollout rolled back at step 1/3: error-rate 0.2 > 0.05"
    assert ended_badly({"message": "aborted by alice at step 2/3"}) == "rollout aborted by alice at step 2/3"
    assert not status_ok({"models": [{"synced": True, "health": "Degraded"}], "invalidCommit": None})


def test_an_invalid_checkout_still_names_its_target() -> None:
    broken = MODEL.replace('stable: "1"', 'stable: "9"')
    with pytest.raises(ValidationFailed) as failed:
        loads(repo({"models/scorer.yaml": broken}))
    assert failed.value.target == "test-repo"
    with pytest.raises(ValidationFailed) as failed:  # the RepositoryConfig itself is broken: no target to name
        loads(repo({"models/scorer.yaml": broken, "repo.yaml": t("""
            apiVersion: modelops.dev/v1alpha1
            kind: RepositoryConfig
            metadata:
              name: Not_A_Name
            """)}))
    assert failed.value.target == ""
