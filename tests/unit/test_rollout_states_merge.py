"""The per-model three-way merge that keeps two writers of a target's rollout ConfigMap (the
leader's tick and a human's `agent rollout` override) from losing each other's change."""

from __future__ import annotations

from agent.cluster._rollouts import merge

A0, A1, A2 = {"model": "ns/a", "step": 0}, {"model": "ns/a", "step": 1}, {"model": "ns/a", "phase": "Aborted"}
B0, B1 = {"model": "ns/b", "step": 0}, {"model": "ns/b", "step": 1}


def test_a_model_only_one_side_changed_keeps_that_change() -> None:
    loaded = {"ns/a": A0, "ns/b": B0}
    ours = {"ns/a": A0, "ns/b": B1}  # we advanced b
    theirs = {"ns/a": A2, "ns/b": B0}  # a human aborted a
    assert merge(ours, loaded, theirs, "theirs") == {"ns/a": A2, "ns/b": B1}
    assert merge(ours, loaded, theirs, "ours") == {"ns/a": A2, "ns/b": B1}


def test_removals_and_additions_count_as_changes() -> None:
    loaded = {"ns/a": A0, "ns/b": B0}
    assert merge({"ns/b": B0}, loaded, {"ns/a": A0, "ns/b": B0}, "theirs") == {"ns/b": B0}  # we removed a
    assert merge(loaded, loaded, {"ns/a": A0}, "theirs") == {"ns/a": A0}  # they removed b
    assert merge({**loaded, "ns/c": {"model": "ns/c"}}, loaded, loaded, "theirs")["ns/c"] == {"model": "ns/c"}
    assert merge({}, {}, {"ns/a": A0}, "ours") == {"ns/a": A0}  # a create that lost the race keeps theirs


def test_a_model_both_changed_keeps_the_preferred_side() -> None:
    loaded = {"ns/a": A0}
    ours, theirs = {"ns/a": A1}, {"ns/a": A2}
    assert merge(ours, loaded, theirs, "theirs") == {"ns/a": A2}  # the controller yields to the override
    assert merge(ours, loaded, theirs, "ours") == {"ns/a": A1}  # the override wins over a tick
