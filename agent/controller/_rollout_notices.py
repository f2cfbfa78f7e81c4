"""What the controller says about rollouts that cannot go on as Git reads: a step that holds
(not judged), a repo whose rollouts have an analysis but no Prometheus to run it, and Git's
canary traffic that a canary rollout does not apply. Each is said once (a log line and an Event
on the model's object; a hold also as the `rollout_held` gauge), not on every tick; and a
waiting step is saved when what `agent rollout status` shows of it changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.engine import Desired
from agent.rollout import RolloutState, Transition, describe, has_analysis, traffic_note
from agent.spec import Model

log = logging.getLogger("agent.controller.rollouts")

REFRESH = 30.0  # seconds: how stale the stored message and check values of a waiting step may get
NO_PROMETHEUS = ("no Prometheus configured (agent run --prometheus-url): spec.rollout judges each step with an "
                 "analysis, so a rollout of this model holds at its first step and never advances")


@dataclass
class Notices:
    """event(model, reason, message, warning); held_metric(model, hold kind, held now);
    analyses: whether a Prometheus runs the analyses."""

    event: Callable[[Model, str, str, bool], None]
    held_metric: Callable[[str, str, bool], None]
    analyses: bool = True
    _said: set[tuple[str, ...]] = field(default_factory=set)  # holds and Git traffic notes already said
    _holding: dict[str, str] = field(default_factory=dict)  # model key -> the kind of hold its gauge shows
    _unjudgeable: set[str] = field(default_factory=set)  # models whose analysis no Prometheus can run
    _refreshed: dict[str, float] = field(default_factory=dict)  # model key -> when a waiting step was saved

    def unjudgeable(self, desired: Desired) -> None:
        """Without Prometheus no analysis runs: each model whose spec.rollout has one is said
        once (log, Event) and shown by `rollout_held{reason="no-prometheus"}`."""
        if self.analyses:
            return
        now = {m.key for m in desired.spec.models if m.rollout is not None and has_analysis(m.rollout)}
        for key in sorted(self._unjudgeable - now):
            self.held_metric(key, "no-prometheus", False)
        for model in desired.spec.models:
            if model.key not in now or model.key in self._unjudgeable:
                continue
            self.held_metric(model.key, "no-prometheus", True)
            if ("no-prometheus", model.key) not in self._said:
                self._said.add(("no-prometheus", model.key))
                log.warning("model %s: %s", model.key, NO_PROMETHEUS)
                self.event(model, "RolloutHeld", NO_PROMETHEUS, True)
        self._unjudgeable = now

    def hold(self, key: str, model: Model | None, state: RolloutState | None) -> None:
        """A progressing step that is not judged: said once per model, step and kind of hold
        (log, Event), and shown by `rollout_held{model,reason}` while it lasts."""
        hold = state.hold if state is not None and state.phase == "Progressing" else None
        kind = hold.kind if hold is not None else None
        previous = self._holding.pop(key, None)
        if previous is not None and previous != kind and previous != "no-prometheus":
            self.held_metric(key, previous, False)
        if state is None or hold is None or model is None:
            if previous is not None and state is not None:
                log.info("rollout of %s: judged again at %s", key, describe(state, model) if model else state.phase)
            return
        self._holding[key] = hold.kind
        if previous != hold.kind and hold.kind != "no-prometheus":
            self.held_metric(key, hold.kind, True)
        mark = ("no-prometheus", key) if hold.kind == "no-prometheus" else \
            ("hold", key, state.version, str(state.step), hold.kind)
        if mark in self._said:
            return
        self._said.add(mark)
        steps = len(model.rollout.steps or (100,)) if model.rollout is not None and state.strategy == "canary" else 2
        message = (f"rollout of {state.version} held at step {state.step + 1}/{steps} ({state.traffic}%): "
                   f"not judged: {hold.reason}")
        log.warning("rollout of %s: %s", key, message)
        self.event(model, "RolloutHeld", message, True)

    def traffic(self, model: Model, state: RolloutState | None, commit: str) -> None:
        """Git's canary traffic that the rollout does not apply: said once per commit (log, Event)."""
        note = traffic_note(model, state) if state is not None else None
        if note is None or model.canary is None:
            return
        mark = ("traffic", model.key, commit, str(model.canary.traffic))
        if mark in self._said:
            return
        self._said.add(mark)
        where = f"commit {commit[:12]}" if commit else "the working copy"
        log.warning("rollout of %s: %s: %s", model.key, where, note)
        self.event(model, "RolloutIgnoresGitTraffic", f"{where}: {note}", True)

    def refresh(self, key: str, before: RolloutState | None, transition: Transition, now: float) -> bool:
        """Whether a waiting tick must be saved: a hold began, changed kind or ended, the checks'
        verdicts changed or their data came or went, or (at most every REFRESH seconds) the
        message or the values did, so `agent rollout status` shows why a step waits."""
        after = transition.state
        if transition.kind != "waiting" or before is None or after is None:
            return False

        def shape(s: RolloutState) -> tuple[Any, ...]:
            return (s.hold.kind if s.hold else None, s.hold.since if s.hold else None, s.healthy_since,
                    tuple((c.name, c.ok, c.value is None) for c in s.last_checks))

        stale = after.message != before.message or after.last_checks != before.last_checks
        if shape(after) != shape(before) or (stale and now - self._refreshed.get(key, 0.0) >= REFRESH):
            self._refreshed[key] = now
            return True
        return False
