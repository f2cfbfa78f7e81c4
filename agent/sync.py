"""Transition shim: the write path moved to agent.engine (Engine.sync). Removed once cli and the
remaining tests import from agent.engine."""

from agent.engine import EngineOptions as Options
from agent.engine import SyncResult as Outcome
from agent.engine import identity

__all__ = ["Options", "Outcome", "identity"]
