"""Progressive delivery's pure core: the rollout state machine and the analysis queries
that gate its steps. No I/O: the caller queries Prometheus, stores the state, reads the clock
and applies the traffic a Transition names."""

from __future__ import annotations

from agent.rollout._analysis import REQUESTS, CheckResult, Query, analysis_queries, judge
from agent.rollout._hold import HOLD_KINDS, NO_PROMETHEUS, Hold, HoldKind, Unjudged, has_analysis, unjudged
from agent.rollout._live import Judged, LiveRollouts, live_rollouts, rollout_note
from agent.rollout._machine import (
    HISTORY_LIMIT,
    Phase,
    RolloutState,
    Transition,
    abort,
    describe,
    pause,
    promote,
    resume,
    start,
    step,
    traffic_override,
    with_outcome_written,
)
from agent.rollout._notes import traffic_note, traffic_notes
from agent.rollout._staging import staged, without_canary
from agent.rollout._stored import InvalidState, LiveCanary, fit_problem, judge_stored, live_canary_of, repair

__all__ = [
    "HISTORY_LIMIT", "REQUESTS", "CheckResult", "Phase", "Query", "RolloutState", "Transition", "abort",
    "analysis_queries", "describe", "judge", "pause", "promote", "resume", "start", "step", "traffic_override",
    "with_outcome_written",
]
__all__ += ["staged", "without_canary"]
__all__ += ["HOLD_KINDS", "NO_PROMETHEUS", "Hold", "HoldKind", "Unjudged", "has_analysis", "traffic_note", "traffic_notes", "unjudged"]
__all__ += ["InvalidState", "LiveCanary", "fit_problem", "judge_stored", "live_canary_of", "repair"]
__all__ += ["Judged", "LiveRollouts", "live_rollouts", "rollout_note"]
