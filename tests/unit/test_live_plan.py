"""The live plan without a cluster: the dry-run is injected (gitops-engine's ServerSideDryRunner),
so which objects need a request, what changed, drift, conflicts and prune are pure logic."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from agent.engine import load_desired
from agent.plan import live_plan, owned_fields_hash
from agent.render import object_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
MANAGER = "modelops-agent"


def stored(obj: dict[str, Any], manager: str = MANAGER, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """obj as the server would hold it after our apply: managedFields naming us."""
    out = copy.deepcopy(obj)
    out["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply", "apiVersion": obj["apiVersion"],
                                         "fieldsType": "FieldsV1", "fieldsV1": fields or {"f:metadata": {}}}]
    out["metadata"]["uid"] = "uid-" + obj["metadata"]["name"]
    return out


class FakeServer:
    """Answers a dry-run with the object as applied (what SSA would store), counting calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, want: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(want["metadata"]["name"])
        return stored(want)


def setup() -> tuple[list[dict[str, Any]], dict[Any, dict[str, Any]], dict[Any, str]]:
    objects = load_desired(EXAMPLE, cached=False).objects
    live = {object_key(o): stored(o) for o in objects}
    owned = {key: owned_fields_hash(obj, MANAGER) for key, obj in live.items()}
    return objects, live, owned


def test_in_sync_needs_no_dry_run() -> None:
    objects, live, owned = setup()
    server = FakeServer()
    plan = live_plan(objects, live, {}, owned, server, manager=MANAGER)
    assert not plan.has_changes and server.calls == []


def test_a_taken_field_is_dry_run_and_reported_as_drift_by_its_manager() -> None:
    objects, live, owned = setup()
    key = next(k for k, o in live.items() if o["kind"] == "ConfigMap")
    theirs = live[key]
    theirs["data"] = {**theirs.get("data", {}), "EXTRA": "x"}
    theirs["metadata"]["managedFields"].append({"manager": "kubectl-edit", "operation": "Update",
                                                "fieldsV1": {"f:data": {"f:EXTRA": {}}}})
    theirs["metadata"]["managedFields"][0]["fieldsV1"] = {"f:data": {}}  # our entry changed: someone took a field
    server = FakeServer()
    plan = live_plan(objects, live, {}, owned, server, manager=MANAGER)
    assert server.calls == [key[3]]
    (changed,) = plan.changed
    assert changed.action == "update" and "data.EXTRA" in changed.changed_fields
    assert changed.drift == {"data.EXTRA": "kubectl-edit"}


def test_missing_objects_are_created_and_gone_entries_pruned_only_when_live() -> None:
    objects, live, owned = setup()
    first = object_key(objects[0])
    del live[first]
    orphan = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "fraud"}}
    live[object_key(orphan)] = stored(orphan)
    owned[object_key(orphan)] = "x"
    owned[("", "ConfigMap", "fraud", "already-gone")] = "y"
    plan = live_plan(objects, live, {}, owned, FakeServer(), manager=MANAGER, prune=True)
    actions = {(c.action, c.name) for c in plan.changed}
    assert actions == {("create", objects[0]["metadata"]["name"]), ("delete", "old")}
    assert not live_plan(objects, live, {}, owned, FakeServer(), manager=MANAGER, prune=False).counts()["delete"]


def test_another_targets_object_is_a_conflict_unless_adopted() -> None:
    objects, live, owned = setup()
    ns = next(o for o in objects if o["kind"] == "Namespace")
    key = object_key(ns)
    theirs = stored(ns)
    theirs["metadata"]["labels"]["modelops.dev/target"] = "team-b"
    del live[key]
    server = FakeServer()
    plan = live_plan(objects, live, {key: ("team-b", theirs)}, owned, server, manager=MANAGER)
    (conflict,) = plan.conflicts
    assert conflict.owner_conflict == "team-b" and server.calls == []
    adopted = live_plan(objects, live, {key: ("team-b", theirs)}, owned, server, manager=MANAGER, adopt=True)
    assert adopted.conflicts == [] and [c.action for c in adopted.changed] == ["update"]
    assert server.calls == [ns["metadata"]["name"]]
