"""Two writers of one target's rollout ConfigMap against the real API server: the leader's tick
(every model's state) and a human's override (one model's). Whoever writes second gets a 409 and
merges per model, so neither loses the other's change to another model; on the same model the
override wins over the tick."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.cluster import Cluster, load_rollouts, save_rollouts

pytestmark = pytest.mark.integration


def state(model: str, **fields: object) -> dict[str, object]:
    return {"model": model, **fields}


def test_concurrent_writers_keep_each_others_changes(kubeconfig: Path) -> None:
    target = f"merge-{uuid.uuid4().hex[:6]}"
    a, b = f"{target}/a", f"{target}/b"
    with Cluster.connect(str(kubeconfig)) as cluster:
        first = load_rollouts(cluster, target)
        first.states = {a: state(a, step=0), b: state(b, step=0)}
        save_rollouts(cluster, first)
        try:
            tick = load_rollouts(cluster, target)  # the leader reads, then judges for a while
            human = load_rollouts(cluster, target)
            human.states[a] = state(a, phase="Aborted")
            save_rollouts(cluster, human, prefer="ours")

            tick.states[b] = state(b, step=1)  # the leader advanced b: its write conflicts, and merges
            save_rollouts(cluster, tick)
            assert load_rollouts(cluster, target).states == {a: state(a, phase="Aborted"), b: state(b, step=1)}
            assert tick.states == {a: state(a, phase="Aborted"), b: state(b, step=1)}  # what was written

            # both change a: the leader's stale tick yields to the override ...
            tick, human = load_rollouts(cluster, target), load_rollouts(cluster, target)
            human.states[a] = state(a, phase="Paused")
            save_rollouts(cluster, human, prefer="ours")
            tick.states[a] = state(a, step=2)
            save_rollouts(cluster, tick)
            assert load_rollouts(cluster, target).states[a] == state(a, phase="Paused")
            # ... and an override written after a tick it did not see wins over that tick
            tick, human = load_rollouts(cluster, target), load_rollouts(cluster, target)
            tick.states[a] = state(a, step=3)
            save_rollouts(cluster, tick)
            human.states[a] = state(a, phase="Progressing")
            save_rollouts(cluster, human, prefer="ours")
            assert load_rollouts(cluster, target).states[a] == state(a, phase="Progressing")
        finally:
            obj = cluster.get(cluster.kind("v1", "ConfigMap"), f"modelops-rollouts-{target}", first.namespace)
            if obj is not None:
                cluster.delete(obj)
