"""The rollout state machine: where a model's progressive delivery stands and what comes next.

Pure: the caller reads the analysis (see `_analysis`), passes the time in, persists the state
(`to_json`/`from_json`) and applies the traffic a Transition names. States are treated as values:
no function here mutates the state it is given.

Transition kinds:
  idle          nothing to track (no rollout, no state)
  started       a rollout began (or restarted: Git named another canary version or strategy)
  advanced      a canary step was healthy for an interval: next step's traffic
  waiting       nothing changes: interval not over, no data yet, analysis unavailable, or a
                finished phase (RolledBack, Aborted, Succeeded, Paused) waiting for Git
  check-failed  a check failed but fewer than max_failed_checks times: the step restarts
  rolled-back   max_failed_checks reached (or a blue-green failure soon after the switch): traffic 0
  succeeded     the last canary step was healthy for an interval: traffic 100
  switched      blue-green preview healthy for an interval: all traffic to the new version
  aborted       a human stopped the rollout: traffic 0
  promoted      a human skipped the rest: traffic 100
  paused        a human held a progressing rollout at its step: its traffic stays, no analysis
  resumed       a human let a paused rollout go on: the step's interval starts again
  finished      Git made the rolled-out version stable: nothing to track
  reset         Git dropped the canary or the rollout before it was stable: nothing to track
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from agent.finite import finite
from agent.rollout._analysis import CheckResult
from agent.spec import Model, Rollout

Phase = Literal["Progressing", "Paused", "Succeeded", "RolledBack", "Aborted"]
PHASES: tuple[str, ...] = get_args(Phase)
STRATEGIES = ("canary", "blueGreen")
HISTORY_LIMIT = 50
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


@dataclass
class RolloutState:
    """One model's rollout, as persisted between reconciles (JSON via to_json/from_json).

    step: canary, the index into the rollout's steps; blueGreen, 0 = preview, 1 = switched (then
    step_started is the switch time, from which the caller counts scaleDownDelay).
    traffic: percent of live traffic the new version gets now.
    """

    model: str
    version: str
    stable: str
    strategy: str
    phase: Phase
    step: int
    traffic: int
    step_started: float
    failed_checks: int = 0
    last_checks: list[CheckResult] = field(default_factory=list)
    message: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    outcome_written: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "stable": self.stable,
            "strategy": self.strategy,
            "phase": self.phase,
            "step": self.step,
            "traffic": self.traffic,
            "step_started": self.step_started,
            "failed_checks": self.failed_checks,
            "last_checks": [
                {"name": c.name, "value": _json_number(c.value), "ok": c.ok, "message": c.message}
                for c in self.last_checks
            ],
            "message": self.message,
            "history": [dict(h) for h in self.history],
            "outcome_written": self.outcome_written,
        }

    @classmethod
    def from_json(cls, data: Any) -> RolloutState:
        """The state `to_json` wrote; anything else (a hand edit, another version's format, a
        corrupt store) is a ValueError, never a half-valid state that moves traffic."""
        if not isinstance(data, dict):
            raise ValueError(f"rollout state: expected an object, got {_kind(data)}")
        required = {"model", "version", "stable", "strategy", "phase", "step", "traffic", "step_started"}
        optional = {"failed_checks", "last_checks", "message", "history", "outcome_written"}
        if missing := required - data.keys():
            raise ValueError(f"rollout state: missing {', '.join(sorted(missing))}")
        if unknown := data.keys() - required - optional:
            raise ValueError(f"rollout state: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        state = cls(
            model=_str(data, "model"),
            version=_str(data, "version"),
            stable=_str(data, "stable"),
            strategy=_choice(data, "strategy", STRATEGIES),
            phase=cast(Phase, _choice(data, "phase", PHASES)),
            step=_int(data, "step", 0, None),
            traffic=_int(data, "traffic", 0, 100),
            step_started=_time(data, "step_started"),
            failed_checks=_int(data, "failed_checks", 0, None) if "failed_checks" in data else 0,
            last_checks=[_check(c) for c in _list(data, "last_checks")],
            message=_str(data, "message") if "message" in data else "",
            history=[_history(h) for h in _list(data, "history")][-HISTORY_LIMIT:],
            outcome_written=_bool(data, "outcome_written") if "outcome_written" in data else False,
        )
        if "/" not in state.model or not state.version:
            raise ValueError("rollout state: model must be namespace/name and version non-empty")
        if state.strategy == "blueGreen" and state.step > 1:
            raise ValueError(f"rollout state: blueGreen step must be 0 or 1, got {state.step}")
        return state


@dataclass(frozen=True)
class Transition:
    """The outcome of one look at a rollout. state None: nothing to track any more (forget it).
    traffic: the live traffic the new version must get now; None: as Git says (no override)."""

    kind: str
    state: RolloutState | None
    reason: str
    traffic: int | None


# --- JSON helpers ----------------------------------------------------------------------------

def _json_number(value: float | None) -> float | str | None:
    """JSON has no Infinity (a p95 in the +Inf bucket is one): written as a string."""
    if value is not None and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def _shown(value: Any) -> str:
    """A stored value, for an error message: as JSON, cut short."""
    try:
        text = json.dumps(value, ensure_ascii=True, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        text = "(not JSON)"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    names = ((dict, "an object"), (list, "a list"), (str, "a string"), (int | float, "a number"))
    return next((name for t, name in names if isinstance(value, t)), "something else")


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise ValueError(f"rollout state: {key} must be a string, got {_shown(v)}")
    return v


def _choice(d: dict[str, Any], key: str, allowed: Sequence[str]) -> str:
    v = _str(d, key)
    if v not in allowed:
        raise ValueError(f"rollout state: {key} must be one of {', '.join(allowed)}, got {_shown(v)}")
    return v


def _int(d: dict[str, Any], key: str, lo: int, hi: int | None) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise ValueError(f"rollout state: {key} must be an integer >= {lo}{f' and <= {hi}' if hi is not None else ''}, "
                         f"got {_shown(v)}")
    return v


def _time(d: dict[str, Any], key: str) -> float:
    """A Unix time: a finite number between 1970 and the year 9999 (what a clock and a date
    formatter can take)."""
    v = d.get(key)
    number = finite(v)
    if number is None or not 0 <= number <= MAX_TIME:
        raise ValueError(f"rollout state: {key} must be a Unix time (a finite number of seconds from 1970 to "
                         f"9999), got {_shown(v)}")
    return number


def _bool(d: dict[str, Any], key: str) -> bool:
    v = d.get(key)
    if not isinstance(v, bool):
        raise ValueError(f"rollout state: {key} must be true or false, got {_shown(v)}")
    return v


def _list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key, [])
    if not isinstance(v, list):
        raise ValueError(f"rollout state: {key} must be a list, got {_kind(v)}")
    return v


def _check(c: Any) -> CheckResult:
    if not isinstance(c, dict) or set(c) != {"name", "value", "ok", "message"}:
        raise ValueError(f"rollout state: a check must be an object with name, value, ok and message, got {_shown(c)}")
    value = c["value"]
    if value in ("+Inf", "-Inf"):
        value = math.inf if value == "+Inf" else -math.inf
    elif value is not None and finite(value) is None:
        raise ValueError(f"rollout state: check value must be a number, +Inf, -Inf or null, got {_shown(value)}")
    if c["ok"] is not None and not isinstance(c["ok"], bool):
        raise ValueError(f"rollout state: check ok must be true, false or null, got {_shown(c['ok'])}")
    return CheckResult(_str(c, "name"), None if value is None else float(value), c["ok"], _str(c, "message"))


def _history(h: Any) -> dict[str, Any]:
    if not isinstance(h, dict) or not {"at", "to", "reason"} <= h.keys():
        raise ValueError(f"rollout state: a history entry must be an object with at, to and reason, got {_shown(h)}")
    for k, v in h.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, str | int | float | bool)):
            raise ValueError(f"rollout state: history field {_shown(k)} must be a string, number or null")
    _time(h, "at")
    return dict(h)


# --- the machine -----------------------------------------------------------------------------

def _rollout(model: Model) -> Rollout:
    if model.rollout is None:
        raise ValueError(f"{model.key} has no rollout")
    return model.rollout


def _steps(rollout: Rollout) -> tuple[int, ...]:
    """Canary traffic steps; none declared is one step straight to 100%."""
    return rollout.steps or (100,)


def _record(old: RolloutState | None, new: RolloutState, kind: str, reason: str, now: float) -> RolloutState:
    entry = {
        "at": now, "kind": kind, "from": old.phase if old else None, "to": new.phase,
        "step": new.step, "traffic": new.traffic, "reason": reason,
    }
    return replace(new, message=reason, history=[*new.history, entry][-HISTORY_LIMIT:])


def _move(kind: str, old: RolloutState | None, new: RolloutState, reason: str, now: float) -> Transition:
    """A transition worth remembering: recorded in the state's history."""
    state = _record(old, new, kind, reason, now)
    return Transition(kind, state, reason, state.traffic)


def _wait(state: RolloutState, reason: str, checks: Sequence[CheckResult] | None = None) -> Transition:
    """No change but the message (and the latest checks): not recorded in the history, which
    would otherwise fill with one entry per reconcile."""
    new = replace(state, message=reason, last_checks=list(checks) if checks is not None else state.last_checks)
    return Transition("waiting", new, reason, new.traffic)


def start(model: Model, now: float) -> RolloutState:
    """A fresh rollout of Git's canary version: the first canary step, or the blue-green preview
    (no live traffic). Not yet recorded in history; `step` records the "started" transition."""
    rollout = _rollout(model)
    if model.canary is None:
        raise ValueError(f"{model.key} has no canary to roll out")
    traffic = _steps(rollout)[0] if rollout.strategy == "canary" else 0
    return RolloutState(
        model=model.key, version=model.canary.version, stable=model.stable, strategy=rollout.strategy,
        phase="Progressing", step=0, traffic=traffic, step_started=now,
    )


def _dur(seconds: float) -> str:
    """Compact duration: 40s, 1m, 1m30s, 2h5m."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec else "")
    return out or "0s"


def _failed(checks: Sequence[CheckResult]) -> list[CheckResult]:
    return [c for c in checks if c.ok is False]


def _position(state: RolloutState, rollout: Rollout | None) -> str:
    """Where the rollout stands, for messages: "at step 2/4", "in preview", "after the switch"."""
    if state.strategy == "blueGreen":
        return "in preview" if state.step == 0 else "after the switch"
    return f"at step {state.step + 1}" + (f"/{len(_steps(rollout))}" if rollout else "")


def step(model: Model, state: RolloutState | None, checks: Sequence[CheckResult] | None, now: float) -> Transition:
    """The next move of `model`'s rollout given what Git says (`model`), the stored state, and
    the judged checks of the current step (None: the analysis could not run, e.g. Prometheus
    down, which neither fails nor advances). Git always wins: another canary version restarts,
    no canary resets, the version made stable finishes."""
    if state is not None and state.model != model.key:
        raise ValueError(f"rollout state of {state.model} given for {model.key}")
    if state is not None and model.stable == state.version:
        return Transition("finished", None, f"{state.version} is stable in Git", None)
    if model.rollout is None or model.canary is None:
        if state is None:
            return Transition("idle", None, "", None)
        what = "the rollout" if model.rollout is None else "the canary"
        return Transition("reset", None, f"Git removed {what} before {state.version} became stable", None)
    rollout = model.rollout
    if state is None or state.version != model.canary.version or state.strategy != rollout.strategy:
        if state is None:
            reason = f"rolling out {model.canary.version} ({rollout.strategy})"
        elif state.version != model.canary.version:
            reason = f"Git names canary {model.canary.version} instead of {state.version}: restarting"
        else:
            reason = f"strategy changed to {rollout.strategy}: restarting"
        return _move("started", state, start(model, now), reason, now)

    where = _position(state, rollout)
    if state.phase in ("RolledBack", "Aborted"):
        return _wait(state, state.message or f"{state.phase} {where}; waiting for Git")
    if state.phase == "Paused":
        return _wait(state, state.message or f"paused {where}")
    if state.phase == "Succeeded":
        if state.strategy == "blueGreen" and checks is not None and _failed(checks) \
                and now - state.step_started < rollout.scale_down_delay_seconds:
            return _judge_failure(state, rollout, checks, now, where)
        return _wait(state, f"succeeded, waiting for Git to make {state.version} stable", checks)

    # Progressing
    if checks is None:
        return _wait(state, f"analysis unavailable {where}; holding {state.traffic}%")
    if _failed(checks):
        return _judge_failure(state, rollout, checks, now, where)
    unjudged = [c for c in checks if c.ok is None]
    if unjudged:
        return _wait(state, f"waiting for data {where}: {'; '.join(c.message for c in unjudged)}", checks)
    elapsed = now - state.step_started
    if elapsed < rollout.interval_seconds:
        return _wait(state, f"{_dur(elapsed)} of {rollout.interval} healthy {where} ({state.traffic}%)", checks)
    healthy = replace(state, last_checks=list(checks))
    if state.strategy == "blueGreen":
        new = replace(healthy, phase="Succeeded", step=1, traffic=100, step_started=now)
        return _move("switched", state, new, f"preview of {state.version} healthy for {rollout.interval}: switched", now)
    steps = _steps(rollout)
    if state.step + 1 >= len(steps):
        new = replace(healthy, phase="Succeeded", traffic=100, step_started=now)
        return _move("succeeded", state, new, f"{state.version} healthy at every step", now)
    new = replace(healthy, step=state.step + 1, traffic=steps[state.step + 1], step_started=now)
    reason = f"healthy for {rollout.interval} {where}: {steps[state.step]}% -> {new.traffic}%"
    return _move("advanced", state, new, reason, now)


def _judge_failure(
    state: RolloutState, rollout: Rollout, checks: Sequence[CheckResult], now: float, where: str
) -> Transition:
    failed = "; ".join(c.message for c in _failed(checks))
    count = state.failed_checks + 1
    bumped = replace(state, failed_checks=count, last_checks=list(checks))
    if count >= rollout.max_failed_checks:
        new = replace(bumped, phase="RolledBack", traffic=0, step_started=now)
        return _move("rolled-back", state, new, f"rolled back {where}: {failed}", now)
    # The step restarts; after a blue-green switch step_started stays the switch time (scaleDownDelay).
    new = bumped if state.phase == "Succeeded" else replace(bumped, step_started=now)
    reason = f"check failed {where} ({count}/{rollout.max_failed_checks}): {failed}"
    return _move("check-failed", state, new, reason, now)


def abort(state: RolloutState, now: float, who: str) -> Transition:
    """A human stops the rollout: like a rollback (no traffic to the new version) until Git changes."""
    new = replace(state, phase="Aborted", traffic=0, step_started=now)
    return _move("aborted", state, new, f"aborted by {who} {_position(state, None)}", now)


def pause(state: RolloutState, now: float, who: str) -> Transition:
    """A human holds a progressing rollout where it is (a canary at its step's traffic, a
    blue-green preview without live traffic): no analysis, no advance, no rollback, until
    `resume`, an abort or promote, or Git changes. Only a Progressing rollout can pause."""
    if state.phase != "Progressing":
        raise ValueError(f"the rollout of {state.version} is {state.phase}: only a progressing rollout can pause")
    new = replace(state, phase="Paused", step_started=now)
    return _move("paused", state, new, f"paused by {who} {_position(state, None)} ({state.traffic}%)", now)


def resume(state: RolloutState, now: float, who: str) -> Transition:
    """A paused rollout goes on at the same step; the step must again be healthy for a whole
    interval (what was judged before the pause is not carried over)."""
    if state.phase != "Paused":
        raise ValueError(f"the rollout of {state.version} is {state.phase}, not Paused: nothing to resume")
    new = replace(state, phase="Progressing", step_started=now)
    return _move("resumed", state, new, f"resumed by {who} {_position(state, None)} ({state.traffic}%)", now)


def promote(state: RolloutState, model: Model, now: float, who: str) -> Transition:
    """A human skips the remaining steps and analysis: Succeeded at 100%, Git still to make it stable."""
    if state.model != model.key:
        raise ValueError(f"rollout state of {state.model} given for {model.key}")
    rollout = _rollout(model)
    last = 1 if state.strategy == "blueGreen" else len(_steps(rollout)) - 1
    new = replace(state, phase="Succeeded", step=last, traffic=100, step_started=now)
    return _move("promoted", state, new, f"promoted by {who} {_position(state, rollout)}", now)


def traffic_override(state: RolloutState | None) -> int | None:
    """The live traffic the new version gets instead of Git's canary weight (None: Git's)."""
    return None if state is None else state.traffic


def with_outcome_written(state: RolloutState) -> RolloutState:
    """The state once the outcome (stable commit, revert, PR) reached Git, so it is written once."""
    return replace(state, outcome_written=True)


def describe(state: RolloutState, model: Model, now: float | None = None) -> str:
    """One line for status output. With `now`, a progressing step shows how long it has been
    healthy; without it, the last message."""
    rollout = _rollout(model) if model.rollout else None
    if rollout is None:
        return f"{state.phase}: {state.message}" if state.message else state.phase
    where = _position(state, rollout)
    if state.phase == "Progressing":
        if state.strategy == "blueGreen":
            head = f"blue-green preview of {state.version} (no live traffic)"
        else:
            head = f"rollout in progress, step {state.step + 1}/{len(_steps(rollout))} ({state.traffic}%)"
        if now is not None and all(c.ok for c in state.last_checks):
            return f"{head}, {_dur(now - state.step_started)} of {rollout.interval} healthy"
        return f"{head}: {state.message}" if state.message else head
    if state.phase == "Succeeded":
        done = "switched" if state.strategy == "blueGreen" else "succeeded"
        return f"{done}, waiting for Git to make {state.version} stable"
    if state.phase == "RolledBack":
        return state.message if state.message.startswith("rolled back") else f"rolled back {where}: {state.message}"
    if state.phase == "Aborted":
        return state.message or f"aborted {where}"
    return f"paused {where} ({state.traffic}%)" + (f": {state.message}" if state.message else "")
