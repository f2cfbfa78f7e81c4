"""A target's stored rollout states as the controller and the CLI act on them (the part that
reads the cluster; the judging is agent.rollout's).

Each stored entry is judged against the model's declared rollout (agent.rollout.judge_stored):
a state that does not parse or does not fit never moves traffic; the model keeps the canary
traffic live in the cluster, read here from its object (the InferenceService's
canaryTrafficPercent, or the annotation on the model's Service that the replica split follows).
That object is read only where the answer depends on it: an invalid entry, or no entry for a
model whose Git canary is under a rollout: looked up among the live objects the caller already
has (an observe()'s), else one GET each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from agent.cluster import INVENTORY_NAMESPACE, Cluster, ClusterError, RolloutStates, load_rollouts
from agent.desired import Desired
from agent.errors import AgentError
from agent.render import ObjectKey
from agent.rollout import (
    InvalidState,
    Judged,
    LiveCanary,
    LiveRollouts,
    RolloutState,
    judge_stored,
    live_canary_of,
    live_rollouts,
)
from agent.spec import Model

__all__ = ["Judged", "judge_states", "live_canary", "read_rollouts"]


def live_canary(cluster: Cluster, model: Model, live: Mapping[ObjectKey, dict[str, Any]] | None = None
                ) -> LiveCanary:
    """The canary the model's live object serves (nothing when there is no object). `live`: the
    target's live objects already read (agent.engine.Observed.live): looked up there, no
    request. Otherwise one GET; a failed read raises ClusterError: "cannot read" must not pass
    for "nothing there"."""
    if model.backend == "kserve":
        group, api_version, kind = "serving.kserve.io", "serving.kserve.io/v1beta1", "InferenceService"
    else:
        group, api_version, kind = "", "v1", "Service"
    if live is not None:
        return live_canary_of(live.get((group, kind, model.namespace, model.name)), model.backend)
    try:
        info = cluster.kind(api_version, kind)
    except AgentError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClusterError) and cause.status != 404:
            raise cause from None
        return LiveCanary()  # the kind is not served: no such object can exist
    return live_canary_of(cluster.get(info, model.name, model.namespace), model.backend)


def judge_states(cluster: Cluster, models: Iterable[Model], stored: RolloutStates,
                 live: Mapping[ObjectKey, dict[str, Any]] | None = None) -> Judged:
    """Every stored entry, and every model whose Git canary is under a rollout, judged. `live`:
    the target's live objects when the caller has them (see live_canary)."""
    by_key = {m.key: m for m in models}
    rolling = {key for key, m in by_key.items() if m.rollout is not None and m.canary is not None}
    out = Judged()
    for key in sorted(set(stored.states) | set(stored.invalid) | rolling):
        raw = stored.states.get(key)
        model = by_key.get(key)
        if model is None:
            if raw is not None:
                with contextlib.suppress(ValueError):  # unreadable: dropped at the next write with its model
                    out.states[key] = RolloutState.from_json(raw)
            continue
        unreadable = stored.invalid[key][0] if key in stored.invalid and raw is None else None
        judged = judge_stored(model, raw, partial(live_canary, cluster, model, live), unreadable)
        if isinstance(judged, InvalidState):
            out.invalid[key] = judged
        elif judged is not None:
            out.states[key] = judged
    return out


def read_rollouts(cluster: Cluster, desired: Desired, namespace: str = INVENTORY_NAMESPACE,
                  now: float | None = None, live: Mapping[ObjectKey, dict[str, Any]] | None = None) -> LiveRollouts:
    """One GET of the target's rollout ConfigMap (none when no model of the repo has a
    spec.rollout, so a repo without rollouts costs no request). Missing: no rollouts; forbidden:
    a warning, and Git's traffic (a least-privilege reader still gets its diff). `live`: the
    target's observed objects, where a state's judging looks up the live canary (without: a GET)."""
    if not any(m.rollout is not None for m in desired.spec.models):
        return LiveRollouts()
    try:
        stored = load_rollouts(cluster, desired.spec.config.name, namespace)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return LiveRollouts(warning=f"cannot read the rollout states ({exc}); planning with Git's canary traffic, "
                                    "so a running rollout's step shows as a change")
    judged = judge_states(cluster, desired.spec.models, stored, live)
    return live_rollouts(desired.spec.models, judged, time.time() if now is None else now)
