"""The Events a controller makes (agent.notify.events_of_record, PassNotices) and the board
it publishes its passes to (agent.ui.Board): each said once, the board's documents built once
per publication, in `agent status`'s shape."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.apply import ApplyReport, ObjectResult
from agent.controller import PassNotices, publish
from agent.engine import Desired, SyncResult, load_desired
from agent.notify import EVENT_KINDS, Event, events_of_record
from agent.plan import ObjectReport, Plan
from agent.render import object_key
from agent.rollout import LiveRollouts
from agent.source import Revision
from agent.ui import Board
from tests.unit.conftest import disk_repo

COMMIT = "a" * 40


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def close(self, timeout: float = 5.0) -> None:
        return None

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture(name="desired")
def _desired(tmp_path: Path) -> Desired:
    loaded = load_desired(disk_repo(tmp_path / "repo"))
    return dataclasses.replace(loaded, revision=Revision(commit=COMMIT, author="Alice <a@example.com>",
                                                         message="Merge pull request '#7' from x\n\nbody"))


def _report(desired: Desired, action: str = "update", drift: dict[str, str] | None = None) -> ObjectReport:
    obj = desired.objects[-1]
    return ObjectReport(action=action, api_version=obj["apiVersion"], kind=obj["kind"],  # type: ignore[arg-type]
                        namespace=obj["metadata"].get("namespace", ""), name=obj["metadata"]["name"],
                        model="fraud/scorer", before=None, after=None, drift=drift or {})


def _outcome(changes: list[ObjectReport], outcomes: list[str]) -> SyncResult:
    plan = Plan(objects=changes, models=[])
    return SyncResult(plan=plan, report=ApplyReport(
        [ObjectResult(change=c, outcome=o, message="denied" if o == "failed" else "")  # type: ignore[arg-type]
         for c, o in zip(changes, outcomes, strict=True)]))


def test_a_commit_is_pending_then_applied_once(desired: Desired) -> None:
    sink = Collect()
    notices = PassNotices(sink, {})
    notices.picked_up(desired)
    notices.picked_up(desired)  # the same commit again: said once
    change = _report(desired)
    notices.after(desired, _outcome([change], ["applied"]), new_commit=True)
    notices.after(desired, _outcome([], []), new_commit=False)  # a later no-op pass says nothing
    assert sink.kinds() == ["commit-pending", "commit-applied"]
    pending, applied = sink.events
    assert pending.target == "test-repo" and pending.commit == COMMIT
    assert applied.details["applied"] == 1 and applied.details["author"] == "Alice <a@example.com>"
    assert "test-repo" in applied.message and COMMIT[:12] in applied.message


def test_a_failed_apply_is_said_once_then_its_success(desired: Desired) -> None:
    sink = Collect()
    notices = PassNotices(sink, {"environment": "production", "cluster": "eu-1"})
    change = _report(desired)
    notices.after(desired, _outcome([change], ["failed"]), new_commit=True)
    notices.after(desired, _outcome([change], ["failed"]), new_commit=True)
    notices.after(desired, _outcome([change], ["applied"]), new_commit=True)
    assert sink.kinds() == ["commit-failed", "commit-applied"]
    failed = sink.events[0]
    assert failed.environment == "production" and failed.cluster == "eu-1"
    assert "production/eu-1" in failed.message and "denied" in failed.message


def test_drift_detected_once_then_healed(desired: Desired) -> None:
    sink = Collect()
    notices = PassNotices(sink, {})
    drifted = _report(desired, drift={"spec.replicas": "kubectl-edit"})
    notices.after(desired, _outcome([drifted], ["skipped"]), new_commit=False)  # detect: not written
    notices.after(desired, _outcome([drifted], ["skipped"]), new_commit=False)
    notices.after(desired, _outcome([drifted], ["applied"]), new_commit=False)  # healed
    kinds = [k for k in sink.kinds() if k.startswith("drift")]
    assert kinds == ["drift-detected", "drift-healed"]
    detected = next(e for e in sink.events if e.kind == "drift-detected")
    assert detected.details["objects"] == [drifted.ref]
    assert detected.details["fields"] == {drifted.ref: ["spec.replicas"]}


def test_a_working_copy_makes_no_commit_events(desired: Desired) -> None:
    sink = Collect()
    notices = PassNotices(sink, {})
    copy = dataclasses.replace(desired, revision=Revision())
    notices.picked_up(copy)
    notices.after(copy, _outcome([_report(copy)], ["applied"]), new_commit=True)
    assert sink.events == []


@pytest.mark.parametrize(("record", "fields", "kind"), [
    ("invalid-commit", {"commit": COMMIT, "errors": ["models/a.yaml:3: spec.stable: unknown version"]},
     "commit-invalid"),
    ("unverified-commit", {"commit": COMMIT, "errors": ["not signed"]}, "commit-invalid"),
    ("rollout", {"model": "fraud/scorer", "transition": "started", "version": "2", "step": 1, "traffic": 10},
     "rollout-started"),
    ("rollout", {"model": "fraud/scorer", "transition": "advanced", "version": "2", "step": 2, "traffic": 50},
     "rollout-step"),
    ("rollout", {"model": "fraud/scorer", "transition": "rolled-back", "version": "2", "reason": "error-rate"},
     "rollout-rolled-back"),
    ("rollout", {"model": "fraud/scorer", "transition": "aborted", "version": "2"}, "rollout-rolled-back"),
    ("rollout", {"model": "fraud/scorer", "transition": "succeeded", "version": "2"}, "rollout-succeeded"),
    ("registry-moved", {"moved": ["fraud/scorer: champion 3 -> 4"]}, "registry-moved"),
    ("registry-refused", {"errors": ["gate: auc 0.8 < 0.9"]}, "registry-refused"),
    ("environment-promotion", {"model": "fraud/scorer", "to": "production", "version": "3", "outcome": "proposed",
                               "pull_request": "https://forge/pr/4"}, "promotion-opened"),
    ("registry-proposal", {"model": "fraud/scorer", "to": "4", "pull_request": "https://forge/pr/5"},
     "promotion-opened"),
])
def test_audit_records_become_events(record: str, fields: dict[str, Any], kind: str) -> None:
    [event] = events_of_record(record, fields, "models")
    assert event.kind == kind and event.target == "models"
    assert event.message and "\n" not in event.message and "None" not in event.message


@pytest.mark.parametrize(("record", "fields"), [
    ("rollout", {"transition": "paused"}), ("environment-promotion", {"outcome": "refused"}),
    ("registry-proposal", {"model": "m"}), ("reconcile", {}), ("object", {}), ("wave-stopped", {}),
])
def test_other_records_make_no_event(record: str, fields: dict[str, Any]) -> None:
    assert events_of_record(record, fields, "models") == []


def test_event_kinds_are_checked() -> None:
    assert "rollout-rolled-back" in EVENT_KINDS
    with pytest.raises(ValueError, match="unknown event kind"):
        Event("rollout-exploded", "models")


def test_the_board_builds_each_document_once_and_wakes_waiters(desired: Desired) -> None:
    board = Board()
    live = {object_key(o): o for o in desired.objects}
    waited: list[int] = []
    start = board.generation
    waiter = threading.Thread(target=lambda: waited.append(board.wait(start, 10)))
    waiter.start()
    outcome = _outcome([_report(desired, drift={"spec.replicas": "kubectl-edit"})], ["skipped"])
    publish(board, desired, live, {}, LiveRollouts(), {"environment": "staging", "cluster": "c1"}, outcome=outcome,
            error="", prometheus=None, audit_log=None)
    waiter.join(10)
    assert waited == [start + 1]
    [entry] = board.entries()
    assert entry.key == ("test-repo", "staging", "c1")
    assert entry.drift == {"fraud/scorer": (outcome.plan.objects[0].ref,)}
    doc = board.document(entry)
    assert doc is board.document(entry)  # cached for this publication
    [model] = doc["models"]
    assert (model["namespace"], model["name"], model["version"], model["synced"]) == ("fraud", "scorer", "1", True)
    assert doc["revision"]["commit"] == COMMIT
    board.forget_where("staging", "c1")
    assert board.entries() == []


def test_a_restart_does_not_say_the_commit_an_earlier_run_synced(desired: Desired) -> None:
    """At a start, the commit the inventory's last-sync mark records was settled by an earlier
    run (applied, perhaps rolled back since): neither pending nor applied is said again; the
    next commit is."""
    sink = Collect()
    notices = PassNotices(sink, {})
    notices.picked_up(desired, synced=COMMIT)
    notices.after(desired, _outcome([], []), new_commit=True)
    assert sink.events == []
    later = dataclasses.replace(desired, revision=Revision(commit="b" * 40))
    notices.picked_up(later, synced=COMMIT)
    notices.after(later, _outcome([_report(later)], ["applied"]), new_commit=True)
    assert sink.kinds() == ["commit-pending", "commit-applied"]


def test_a_start_on_a_commit_not_yet_synced_says_it(desired: Desired) -> None:
    sink = Collect()
    notices = PassNotices(sink, {})
    notices.picked_up(desired, synced="c" * 40)
    notices.after(desired, _outcome([_report(desired)], ["failed"]), new_commit=True)
    assert sink.kinds() == ["commit-pending", "commit-failed"]


def test_settle_freezes_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from agent.controller import _memory, settle

    monkeypatch.setattr(_memory, "_last", [float("-inf")])  # this process's own settles are not disturbed
    try:
        assert settle(now=1e9)
        assert gc.get_freeze_count() > 0
        assert not settle(now=1e9 + 1)  # another controller of the fleet, a moment later
        assert settle(now=1e9 + 3600)
    finally:
        gc.unfreeze()
