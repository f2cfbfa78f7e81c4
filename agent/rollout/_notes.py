"""What a reviewer must be told about Git's canary traffic under a canary rollout: the rollout
decides the live traffic, so a number written in Git (`agent promote --traffic 50`) is not
applied while spec.rollout drives the canary. Pure: plans, status and the controller say it."""

from __future__ import annotations

from agent.rollout._machine import RolloutState, _steps
from agent.spec import Model, Spec

__all__ = ["traffic_note", "traffic_notes"]

_NOT_APPLIED = "Git's {git}% is not applied while spec.rollout drives the canary"


def _where(state: RolloutState, steps: tuple[int, ...]) -> str:
    if state.phase in ("Progressing", "Paused"):
        return f"step {state.step + 1}/{len(steps)}, {state.traffic}%" + (", paused" if state.phase == "Paused" else "")
    done = {"Succeeded": "succeeded", "RolledBack": "rolled back", "Aborted": "aborted"}[state.phase]
    return f"{done}, {state.traffic}%"


def traffic_note(model: Model, state: RolloutState | None) -> str | None:
    """`traffic decided by the rollout (step 1/3, 10%); Git's 50% is not applied ...` when Git
    writes a canary traffic that the model's canary rollout does not serve; None otherwise.

    `state`: the model's stored rollout (None: not started yet, it starts at the first step).
    Git's number is not worth a note when it is the rollout's first step (where every rollout
    starts, the number the loader gives a canary without one) or what serves now."""
    rollout, canary = model.rollout, model.canary
    if rollout is None or canary is None or rollout.strategy != "canary":
        return None
    steps = _steps(rollout)
    git = canary.traffic
    if state is not None and state.version == canary.version and state.strategy == "canary" \
            and state.version != model.stable:
        live, where = state.traffic, _where(state, steps)
    else:
        live, where = steps[0], f"it starts at step 1/{len(steps)}, {steps[0]}%"
    if git in (live, steps[0]):
        return None
    return f"traffic decided by the rollout ({where}); " + _NOT_APPLIED.format(git=git)


def traffic_notes(before: Spec | None, after: Spec) -> dict[str, list[str]]:
    """model key -> notes, for a plan of two revisions (no cluster, so no rollout state): each
    model whose canary changed and whose traffic written in Git a canary rollout will not apply."""
    old = {m.key: m for m in before.models} if before is not None else {}
    notes: dict[str, list[str]] = {}
    for model in after.models:
        rollout, canary = model.rollout, model.canary
        if rollout is None or canary is None or rollout.strategy != "canary":
            continue
        previous = old.get(model.key)
        if previous is not None and previous.canary == canary:
            continue  # the change is not about the canary
        steps = _steps(rollout)
        if canary.traffic == steps[0]:
            continue
        shown = ", ".join(str(s) for s in steps)
        notes[model.key] = [f"traffic decided by spec.rollout (steps {shown}); " + _NOT_APPLIED.format(git=canary.traffic)]
    return notes
