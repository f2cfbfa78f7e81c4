"""Where running rollouts keep their state: one ConfigMap per target, one key per model.

A rollout outlives the process that drives it: a restarted controller, or a new leader, must
resume at the same step instead of starting the canary over (or, worse, letting Git's static
traffic win). The state lives in the cluster it describes, next to the inventory, so `agent
diff`/`status` on a laptop see it too. Values are the JSON of agent.rollout.RolloutState; this
edge stores and returns them as plain dicts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.cluster._client import Cluster, ClusterError
from agent.cluster._inventory import INVENTORY_NAMESPACE
from agent.cluster._kinds import well_known

_CM = well_known("v1", "ConfigMap")
assert _CM is not None


def rollouts_name(target: str) -> str:
    return f"modelops-rollouts-{target}"


def _data_key(model: str) -> str:
    """ConfigMap keys allow [-._a-zA-Z0-9]: namespace/name becomes namespace.name (neither may
    contain a dot's worth of ambiguity: both are DNS labels)."""
    return model.replace("/", ".")


def _model_key(data_key: str) -> str:
    """The model a data key stores the state of (namespace.name -> namespace/name)."""
    return data_key.replace(".", "/", 1)


@dataclass
class RolloutStates:
    """The states of one target's rollouts as last read (model key -> state JSON)."""

    target: str
    namespace: str = INVENTORY_NAMESPACE
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_version: str | None = None
    # the states as read (or last written): what a conflicting writer's change is told apart by
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)
    # entries that are not a JSON object of the model their key names: model key -> (why, the
    # value as stored). Written back unchanged unless `states` has the model: an unreadable state
    # is not silently dropped (that would read as "no rollout", and start one again)
    invalid: dict[str, tuple[str, str]] = field(default_factory=dict)

    def to_configmap(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": rollouts_name(self.target),
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/part-of": "modelops-agent", "modelops.dev/rollouts": self.target},
        }
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        data = {_data_key(k): raw for k, (_why, raw) in sorted(self.invalid.items()) if k not in self.states}
        data.update({_data_key(k): json.dumps(v, sort_keys=True, separators=(",", ":"))
                     for k, v in sorted(self.states.items())})
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_rollouts(cluster: Cluster, target: str, namespace: str = INVENTORY_NAMESPACE) -> RolloutStates:
    """The target's rollout states (none yet: empty), each under the model its data key names.
    A value that is not a JSON object naming that model is kept in `invalid` with the reason: a
    hand-edited ConfigMap must not stop the controller, nor read as "no rollout here" (which
    would start the rollout again); whether a state fits the model is agent.rollout's to say."""
    assert _CM is not None
    cm = cluster.get(_CM, rollouts_name(target), namespace)
    found = RolloutStates(target=target, namespace=namespace)
    if cm is None:
        return found
    meta = cm.get("metadata")
    found.resource_version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    data = cm.get("data")
    for key, value in (data.items() if isinstance(data, dict) else ()):
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        model = _model_key(key)
        try:
            state = json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            found.invalid[model] = ("the stored value is not JSON", value)
            continue
        if not isinstance(state, dict):
            found.invalid[model] = ("the stored value is not a JSON object", value)
        elif state.get("model") != model:
            named = state.get("model")
            what = f"model {named}" if isinstance(named, str) else "no model"
            found.invalid[model] = (f"the state stored under {key} names {what}"[:200], value)
        else:
            found.states[model] = state
    found.loaded = copy.deepcopy(found.states)
    return found


Prefer = Literal["theirs", "ours"]
ATTEMPTS = 4


def merge(ours: dict[str, dict[str, Any]], loaded: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]],
          prefer: Prefer) -> dict[str, dict[str, Any]]:
    """Three-way merge of one target's states, per model: a model only one side changed since
    `loaded` keeps that side's state (a removal included); a model both changed keeps `prefer`'s.
    The controller prefers theirs (a human override wins; its next tick starts from it), the
    CLI's override prefers ours (the human's decision is the point of the write)."""
    merged: dict[str, dict[str, Any]] = {}
    for key in sorted(set(ours) | set(loaded) | set(theirs)):
        mine, base, other = ours.get(key), loaded.get(key), theirs.get(key)
        if mine == base:
            chosen = other
        elif other == base:
            chosen = mine
        else:
            chosen = other if prefer == "theirs" else mine
        if chosen is not None:
            merged[key] = chosen
    return merged


def save_rollouts(cluster: Cluster, states: RolloutStates, *, prefer: Prefer = "theirs") -> None:
    """Create or replace, guarded by the resourceVersion read. Two writers share the ConfigMap:
    the leader (every model's state, each tick) and `agent rollout abort|promote|pause|resume`
    (one model's). On a conflict the fresh ConfigMap is read and merged per model (`merge`), so
    neither writer's change to another model is lost, and written again (a few attempts).
    `states.states` ends as what was written."""
    assert _CM is not None
    for attempt in range(1, ATTEMPTS + 1):
        body = states.to_configmap()
        try:
            if states.resource_version is None:
                written = cluster.create(_CM, body, states.namespace, make_namespace=True)
            else:
                written = cluster.replace(_CM, body)
        except ClusterError as err:
            if attempt == ATTEMPTS or err.status not in (409,):
                raise
            fresh = load_rollouts(cluster, states.target, states.namespace)
            states.states = merge(states.states, states.loaded, fresh.states, prefer)
            states.invalid = dict(fresh.invalid)  # unreadable entries as they are now (a state of ours replaces one)
            states.loaded = fresh.loaded
            states.resource_version = fresh.resource_version
            continue
        states.resource_version = written["metadata"]["resourceVersion"]
        states.loaded = copy.deepcopy(states.states)
        return
