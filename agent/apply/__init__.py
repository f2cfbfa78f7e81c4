"""Execute plans: ordering, concurrency, conflict policy, prune budget."""

from agent.apply._engine import ApplyReport, ObjectResult, PruneRefused, check_prune_budget, execute
from agent.apply._events import EventPoster, event_for, make_event
from agent.apply._task import SyncTask, tasks_for

__all__ = ["ApplyReport", "EventPoster", "ObjectResult", "PruneRefused", "SyncTask", "check_prune_budget", "event_for", "execute", "make_event", "tasks_for"]
