"""Whether a stored rollout state may steer traffic, and what happens when it may not.

A rollout's state lives in the cluster (the ConfigMap modelops-rollouts-<target>) and is read
back on every tick; anyone who can write that ConfigMap can change it. A state that does not
parse, or does not fit the model's declared rollout (a phase, a step or a traffic that the
declared steps do not have), never moves traffic: the model keeps the canary traffic that is
live in the cluster (0 when the cluster cannot tell), the controller reports it and waits for a
human (`agent rollout abort|promote|resume` writes a fresh state, `repair`) or for Git to name
another canary version (a fresh rollout). So does a missing state while the cluster already
serves Git's canary at a traffic a fresh start would change (the state was deleted, or the
ConfigMap emptied). Pure: the caller reads the ConfigMap and the model's live object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.render import CANARY_ANNOTATION, TRAFFIC_ANNOTATION
from agent.rollout._machine import RolloutState, Transition, _move, _steps, start
from agent.spec import Model

__all__ = ["InvalidState", "LiveCanary", "fit_problem", "judge_stored", "live_canary_of", "repair"]


@dataclass(frozen=True)
class LiveCanary:
    """What the model's live object serves: its canary version (None: no canary, or no object)
    and that canary's traffic (None: the object does not say, or says something that is not a
    percentage)."""

    version: str | None = None
    traffic: int | None = None


@dataclass(frozen=True)
class InvalidState:
    """A stored state that may not steer traffic: `traffic` is what the canary `version` keeps."""

    model: str
    version: str
    reason: str
    traffic: int

    @property
    def message(self) -> str:
        return (f"invalid rollout state: {self.reason}; canary {self.version} held at {self.traffic}% until "
                "`agent rollout abort|promote|resume` or Git names another canary version")


def live_canary_of(obj: Any, backend: str) -> LiveCanary:
    """The canary a live object serves: an InferenceService (kserve: its canaryTrafficPercent)
    or the model's Service (kubernetes: the traffic annotation the replica split follows). Read
    as untrusted: anything unexpected is "cannot tell"."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    version = annotations.get(CANARY_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(version, str) or not version:
        return LiveCanary()
    assert isinstance(annotations, dict)
    raw: Any
    if backend == "kserve":
        spec = obj.get("spec")
        predictor = spec.get("predictor") if isinstance(spec, dict) else None
        raw = predictor.get("canaryTrafficPercent") if isinstance(predictor, dict) else None
    else:
        text = annotations.get(TRAFFIC_ANNOTATION)
        raw = int(text) if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 3 else None
    traffic = raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 100 else None
    return LiveCanary(version, traffic)


def fit_problem(state: RolloutState, model: Model) -> str | None:
    """Why `state` does not fit `model`'s declared rollout (None: it fits): the step must be
    one of the declared steps and the traffic what the phase gives at that step (the step's
    weight while progressing or paused, 100 once succeeded, 0 once rolled back or aborted)."""
    rollout = model.rollout
    if rollout is None:
        return "the model declares no rollout"
    if state.model != model.key:
        return f"the state is of model {state.model}"
    if state.strategy != rollout.strategy:
        return f"the state is of a {state.strategy} rollout, Git declares {rollout.strategy}"
    weights: tuple[int, ...]
    if state.strategy == "blueGreen":
        count, weights = 2, (0, 100)
    else:
        weights = _steps(rollout)
        count = len(weights)
    if state.step >= count:
        return f"step {state.step + 1} is not one of the {count} declared steps"
    if state.phase in ("RolledBack", "Aborted"):
        expected = 0
    elif state.phase == "Succeeded":
        expected = 100
        if state.strategy == "blueGreen" and state.step != 1:
            return "a succeeded blue-green rollout is switched (step 2), not in preview"
    else:  # Progressing, Paused: at the step's weight (a blue-green preview has no live traffic)
        if state.strategy == "blueGreen" and state.step != 0:
            return f"a {state.phase.lower()} blue-green rollout is in preview (step 1), not switched"
        expected = weights[state.step]
    if state.traffic != expected:
        where = f"step {state.step + 1} of {list(weights)}" if state.strategy == "canary" else "this step"
        return f"traffic {state.traffic} is not what a {state.phase} rollout has at {where} ({expected})"
    return None


def _version_of(raw: Any) -> str | None:
    version = raw.get("version") if isinstance(raw, Mapping) else None
    return version if isinstance(version, str) and version else None


def judge_stored(model: Model, raw: Mapping[str, Any] | None, live: Callable[[], LiveCanary],
                 unreadable: str | None = None) -> RolloutState | InvalidState | None:
    """What the stored entry of `model` means: the state to go on from, an InvalidState (its
    traffic held), or None (no state: the machine starts a fresh rollout if Git names a canary).

    raw: the stored JSON object (None: no entry); unreadable: why the entry is not even a JSON
    object of this model. `live()` reads the model's live object; it is called only when the
    answer depends on it. A parsed state of another version or strategy than Git's canary is
    returned as it is: Git moved on, and the machine restarts, resets or finishes it."""
    rollout, canary = model.rollout, model.canary
    state: RolloutState | None = None
    problem = unreadable
    if problem is None and raw is not None:
        try:
            state = RolloutState.from_json(raw)
        except ValueError as exc:
            problem = str(exc).removeprefix("rollout state: ")
    if state is not None:
        if (rollout is None or canary is None or state.version != canary.version or model.stable == state.version
                or state.strategy != rollout.strategy) and state.model == model.key:
            return state
        problem = fit_problem(state, model)
        if problem is None:
            return state
    if rollout is None or canary is None:
        return None  # Git has no canary rollout: nothing to hold, the stored entry is forgotten
    if problem is None:  # no entry at all
        seen = live()
        if seen.version != canary.version:
            return None  # Git names a canary the cluster does not serve yet: a fresh rollout
        if seen.traffic == start(model, 0.0).traffic:
            return None  # a fresh start keeps the live traffic
        shown = f"{seen.traffic}%" if seen.traffic is not None else "a traffic it does not tell"
        problem = f"there is no stored state, but the cluster serves canary {canary.version} at {shown}"
    else:
        version = state.version if state is not None else _version_of(raw)
        if version is not None and version != canary.version:
            return None  # the entry is of another version: Git's canary starts a fresh rollout
        seen = live()
        if version is None and seen.version is not None and seen.version != canary.version:
            return None  # unreadable, beside another canary than Git's: Git's starts a fresh rollout
    held = seen.traffic if seen.version == canary.version and seen.traffic is not None else 0
    return InvalidState(model.key, canary.version, problem, held)


def repair(model: Model, invalid: InvalidState, command: str, now: float, who: str) -> Transition:
    """A human's way out of an invalid state: a fresh, valid state of Git's canary. abort: no
    traffic; promote: 100%; resume: the rollout starts again at its first step. ValueError for
    anything else (pause: there is no step to hold)."""
    fresh = start(model, now)
    rollout = model.rollout
    assert rollout is not None
    note = f"the stored state was invalid ({invalid.reason})"
    if command == "abort":
        new = replace(fresh, phase="Aborted", traffic=0)
        return _move("aborted", None, new, f"aborted by {who}; {note}", now)
    if command == "promote":
        last = 1 if fresh.strategy == "blueGreen" else len(_steps(rollout)) - 1
        new = replace(fresh, phase="Succeeded", step=last, traffic=100)
        return _move("promoted", None, new, f"promoted by {who}; {note}", now)
    if command == "resume":
        return _move("resumed", None, fresh, f"started again by {who} at step 1 ({fresh.traffic}%); {note}", now)
    raise ValueError(f"the rollout state of {model.key} is invalid ({invalid.reason}): abort, promote or resume it")
