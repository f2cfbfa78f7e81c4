"""Waves across an environment's clusters (pure, clocked: the time is passed in).

An environment deploys to clusters [c1, c2, ...] in that order. A new change of its rendered
objects (a `token`) is handed to c1 only; c2 gets it once c1 applied it AND every model whose
stable or canary changed and has a rollout (`watched`) finished its rollout there (phase
Succeeded), or, when none is watched, `soak_seconds` after c1 applied it with its models
Healthy; and so on. A watched model's rollout failing (RolledBack, Aborted) in the cluster the
wave waits on stops the wave for that change: the clusters after it keep what they had. A later
change starts a new wave. The first change a Wave sees (the agent's start) is handed to every
cluster at once when it watches no rollout (what each cluster had is not known here, and a
restart must not leave the later clusters unmanaged for a soak); one with a rollout in flight
starts at the first cluster like any change: a canary that failed there before the restart
never reaches the others, one that succeeded there is judged again at once from its stored state.

A cluster that is unreachable (down, hung, or without credentials) when the wave reaches it does
not hold the others: the wave hands it the change (it applies it once back) and goes on to the
next cluster, which is then the one judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.spec import Model

SUCCEEDED = "Succeeded"
FAILED = ("RolledBack", "Aborted")


@dataclass(frozen=True)
class Progress:
    """What a member reports after a pass (read in memory): the token its last full write
    applied, its rollouts' phases by model key, and whether its applied models are Healthy."""

    applied: str = ""
    phases: Mapping[str, str] = field(default_factory=dict)
    healthy: bool = False
    reachable: bool = True


@dataclass(frozen=True)
class Stop:
    """A wave stopped: `cluster` is where `model`'s rollout failed (`reason`: its phase)."""

    cluster: str
    token: str
    model: str
    reason: str


def watched_models(old: Iterable[Model], new: Iterable[Model]) -> frozenset[str]:
    """The keys of the models of `new` that have a rollout and whose stable or canary differs
    from `old` (a model new in `new` counts when it has a canary)."""
    before = {m.key: (m.stable, m.canary) for m in old}
    return frozenset(m.key for m in new if m.rollout is not None and m.canary is not None
                     and before.get(m.key) != (m.stable, m.canary))


class Wave:
    """One environment's wave. `handed(cluster)` is the token that cluster is to have now."""

    def __init__(self, clusters: Sequence[str], soak_seconds: float) -> None:
        if not clusters:
            raise ValueError("a wave needs at least one cluster")
        self.clusters = tuple(clusters)
        self.soak_seconds = soak_seconds
        self.token = ""
        self.watched: frozenset[str] = frozenset()
        self.reached = 0  # clusters[:reached] are handed `token`
        self.stopped: Stop | None = None
        self._before: dict[str, str] = {}  # what each cluster had when this wave started
        self._applied_at: dict[str, float] = {}
        self._succeeded: dict[str, set[str]] = {}

    def handed(self, cluster: str) -> str:
        i = self.clusters.index(cluster)
        return self.token if i < self.reached else self._before.get(cluster, "")

    @property
    def waiting_on(self) -> str:
        """The cluster whose outcome the wave waits for ("" when done or stopped)."""
        if self.stopped is not None or self.reached >= len(self.clusters) or self.reached == 0:
            return ""
        return self.clusters[self.reached - 1]

    def start(self, token: str, watched: frozenset[str]) -> bool:
        """A change: True when it starts a new wave (a token already in flight changes nothing)."""
        if token == self.token:
            return False
        first = not self.token
        self._before = {c: self.handed(c) for c in self.clusters}
        self.token, self.watched, self.stopped = token, watched, None
        self.reached = len(self.clusters) if first and not watched else 1
        self._applied_at, self._succeeded = {}, {}
        return True

    def update(self, progress: Mapping[str, Progress], now: float) -> Stop | None:
        """Advance as far as the members' progress allows; the Stop the first time it stops."""
        while self.stopped is None and 0 < self.reached < len(self.clusters):
            cluster = self.clusters[self.reached - 1]
            p = progress.get(cluster)
            if p is not None and not p.reachable and p.applied != self.token:
                self.reached += 1  # handed: it applies it once back; the next cluster is judged
                continue
            if p is None or p.applied != self.token:
                return None
            applied_at = self._applied_at.setdefault(cluster, now)
            done = self._succeeded.setdefault(cluster, set())
            for model in sorted(self.watched):
                phase = p.phases.get(model, "")
                if phase in FAILED:
                    self.stopped = Stop(cluster, self.token, model, phase)
                    return self.stopped
                if phase == SUCCEEDED:
                    done.add(model)
            if self.watched:
                if not self.watched <= done:
                    return None
            elif not p.healthy or now - applied_at < self.soak_seconds:
                return None
            self.reached += 1
        return None

    def due(self, now: float) -> float | None:
        """When a soak ends (the caller wakes then), None when no soak is running."""
        cluster = self.waiting_on
        if not cluster or self.watched or cluster not in self._applied_at:
            return None
        return self._applied_at[cluster] + self.soak_seconds
