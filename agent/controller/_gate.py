"""The write gate: whether a plan may be written, by the drift policy and fight back-off.

Pure and clocked: the caller passes `now` (monotonic seconds), so it is tested without threads,
sleeps or a cluster. A new commit (or a rollout's new step) is always written. Drift between
commits is healed (`heal`) or only reported (`detect`). An object healed more than
`FIGHT_HEALS` times within `FIGHT_WINDOW` seconds is in a fight with another writer: it is
healed with a growing delay (5 s doubling up to 300 s) and reported, naming the other field
manager, instead of in a hot loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agent.plan import Plan
from agent.render import ObjectKey

log = logging.getLogger("modelops.controller")

DriftPolicy = Literal["heal", "detect"]

FIGHT_WINDOW = 60.0
FIGHT_HEALS = 3


@dataclass
class Fight:
    """Heals of one object in a row: someone keeps rewriting it."""

    heals: list[float] = field(default_factory=list)
    delay: float = 0.0
    until: float = 0.0
    managers: str = ""


class WriteGate:
    """`allow(plan, new_commit, now)`; `on_drift(policy, count)` counts drifted objects (a metric)."""

    def __init__(self, policy: DriftPolicy, on_drift: Callable[[str, int], None] = lambda _p, _n: None) -> None:
        self.policy: DriftPolicy = policy
        self.fights: dict[ObjectKey, Fight] = {}
        self._on_drift = on_drift

    def allow(self, plan: Plan, new_commit: bool, now: float) -> bool:
        """Whether `plan` may be written: a new commit always; drift per policy, and not while an
        object is in a fight with another writer."""
        policy = self.policy
        drifted = [c for c in plan.changed if c.drift]
        if drifted:
            self._on_drift(policy if not new_commit else "heal", len(drifted))
        if new_commit:
            return True
        if policy == "detect":
            for c in drifted:
                log.warning("drift on %s: %s (policy detect: not healed)", c.ref,
                            ", ".join(f"{f} by {m}" for f, m in sorted(c.drift.items())))
            return False
        for c in plan.changed:
            if c.action == "delete":
                continue
            fight = self.fights.setdefault(c.key, Fight())
            if now < fight.until:
                return False  # still backing off; the timer brings us back
            fight.heals = [t for t in fight.heals if now - t < FIGHT_WINDOW] + [now]
            if len(fight.heals) > FIGHT_HEALS:
                fight.delay = min(max(2 * fight.delay, 5.0), 300.0)
                fight.until = now + fight.delay
                fight.managers = ", ".join(sorted(set(c.drift.values()))) or "another writer"
                log.warning("%s is rewritten again and again by %s: %d heals in %.0f s; next heal in %.0f s",
                            c.ref, fight.managers, len(fight.heals), FIGHT_WINDOW, fight.delay)
                return False
        return True

    def due(self, now: float) -> float:
        """When the first back-off still running ends (inf: none), so the loop wakes up to heal."""
        dues = [f.until for f in self.fights.values() if f.until > now]
        return min(dues) if dues else float("inf")
