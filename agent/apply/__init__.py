"""Execute plans: ordering, concurrency, conflict policy, prune budget."""

from agent.apply._engine import ApplyReport, ObjectResult, PruneRefused, check_prune_budget, execute

__all__ = ["ApplyReport", "ObjectResult", "PruneRefused", "check_prune_budget", "execute"]
