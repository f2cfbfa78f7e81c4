"""Transition shim: judging stored rollout states moved to agent.engine (reading) and
agent.rollout (Judged). Removed once cli and the controller import from there."""

from agent.engine import judge_states, live_canary
from agent.rollout import Judged

__all__ = ["Judged", "judge_states", "live_canary"]
