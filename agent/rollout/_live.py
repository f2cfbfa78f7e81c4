"""A target's rollouts as stored in the cluster, seen from Git's side (pure): which traffic each
running rollout decides, and the notes a plan and the status show. Reading the stored states
is the engine's (agent.engine); this only judges what was read."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.plan import RolloutNote
from agent.rollout._machine import RolloutState, describe, traffic_override
from agent.rollout._notes import traffic_note
from agent.rollout._stored import InvalidState
from agent.spec import Model


@dataclass
class Judged:
    """states: the entries that may steer (model key -> state; models no longer in the repo
    included, for listings); invalid: those that may not, with the traffic each keeps."""

    states: dict[str, RolloutState] = field(default_factory=dict)
    invalid: dict[str, InvalidState] = field(default_factory=dict)


@dataclass
class LiveRollouts:
    """A target's rollouts as stored in the cluster, seen from Git's side: `traffic` is the live
    canary traffic each running rollout decides (model key -> percent; plan against it, so the
    step is neither shown as drift nor healed back to Git's number; a state that may not steer
    keeps the live traffic), `notes` what each is doing.
    `warning`: the states could not be read (forbidden) and Git's traffic is used."""

    states: dict[str, RolloutState] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    notes: dict[str, RolloutNote] = field(default_factory=dict)
    warning: str = ""
    unreadable: dict[str, str] = field(default_factory=dict)  # model key -> why its stored state was skipped
    invalid: dict[str, InvalidState] = field(default_factory=dict)  # states that may not steer: traffic held
    traffic_notes: dict[str, str] = field(default_factory=dict)  # model key -> Git's traffic the rollout does not apply


def rollout_note(state: RolloutState, model: Model, now: float | None = None) -> RolloutNote:
    """The plan's and status's view of one rollout: 1-based step of n, and describe()'s line."""
    if state.strategy == "blueGreen":
        steps = 2
    else:
        steps = len(model.rollout.steps or (100,)) if model.rollout is not None else state.step + 1
    return RolloutNote(phase=state.phase, step=state.step + 1, steps=steps, traffic=state.traffic,
                       version=state.version, message=describe(state, model, now))


def _applies(state: RolloutState, model: Model) -> bool:
    """The controller drives a state only while Git still rolls out that version (a new canary
    version, no canary or no rollout ends or restarts it): only then is its traffic the live one."""
    return (model.rollout is not None and model.canary is not None and model.canary.version == state.version
            and model.stable != state.version)


def live_rollouts(models: tuple[Model, ...], judged: Judged, now: float) -> LiveRollouts:
    """What the judged stored states mean for the plan: the traffic to plan against and the notes."""
    found = LiveRollouts()
    by_key = {m.key: m for m in models}
    for key, held in judged.invalid.items():  # never moves traffic: the live canary traffic stays
        found.invalid[key] = held
        found.unreadable[key] = held.reason
        found.traffic[key] = held.traffic
        found.notes[key] = RolloutNote(phase="Invalid", step=0, steps=0, traffic=held.traffic, version=held.version,
                                       message=held.message)
    for key, state in judged.states.items():
        found.states[key] = state
        model = by_key.get(key)
        if model is None:
            continue
        note = rollout_note(state, model, now)
        if _applies(state, model):
            percent = traffic_override(state)
            if percent is not None:
                found.traffic[key] = percent
        else:
            why = (f"Git's canary is {model.canary.version}" if model.canary is not None else "Git has no canary"
                   ) if model.rollout is not None else "Git has no rollout"
            note = RolloutNote(note.phase, note.step, note.steps, note.traffic, note.version,
                               f"{note.message} (stale: {why}; the controller ends or restarts it)")
        found.notes[key] = note
    for model in models:
        if model.key not in found.invalid and (said := traffic_note(model, found.states.get(model.key))) is not None:
            found.traffic_notes[model.key] = said
    return found
