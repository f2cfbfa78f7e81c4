"""A fleet's /metrics: every member's series labelled cluster="..." and environment="...", the
fleet's own (its source follower, webhooks, the process) unlabelled, and fleet-level series:
members up, clusters unreachable, waves stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from agent.controller._metrics import PREFIX, Metrics


class MemberView(Protocol):
    """What the metrics read of a member (agent.controller._member.Member)."""

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def unreachable(self) -> str: ...

    @property
    def metrics(self) -> Metrics | None: ...


Members = Callable[[], Sequence[MemberView]]


class _Merged(Collector):
    """The fleet's own registry and each member's, one family per name (member samples labelled)."""

    def __init__(self, own: CollectorRegistry, members: Members) -> None:
        self.own = own
        self.members = members

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        sources: list[tuple[CollectorRegistry, dict[str, str]]] = [(self.own, {})]
        sources += [(m.metrics.registry, m.labels) for m in self.members() if m.metrics is not None]
        for registry, labels in sources:
            for family in registry.collect():
                if labels and family.name.startswith("process_"):  # one process: its series once
                    continue
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                            family.unit)
                merged.samples.extend(Sample(s.name, {**s.labels, **labels}, s.value, s.timestamp, s.exemplar)
                                      for s in family.samples)
        yield from families.values()


class _FleetState(Collector):
    def __init__(self, members: Members) -> None:
        self.members = members

    def collect(self) -> Iterable[Metric]:
        members = list(self.members())
        up = GaugeMetricFamily(PREFIX + "fleet_members", "Members (one per environment and cluster) by state: up "
                               "(its API server answered its last pass) or down.", labels=["state"])
        down = [m for m in members if m.unreachable]
        up.add_metric(["up"], len(members) - len(down))
        up.add_metric(["down"], len(down))
        yield up
        unreachable = GaugeMetricFamily(PREFIX + "cluster_unreachable", "1 while a member's cluster did not answer "
                                        "its last pass (or its credentials did not load), else 0.",
                                        labels=["cluster", "environment"])
        for m in members:
            unreachable.add_metric([m.labels["cluster"], m.labels["environment"]], 1 if m.unreachable else 0)
        yield unreachable


class FleetMetrics(Metrics):
    """The fleet's own Metrics (its source follower and webhooks write them) whose exposition
    holds every member's too."""

    def __init__(self, members: Members) -> None:
        super().__init__(process=True)
        self._wave_stopped = Counter(PREFIX + "wave_stopped", "Waves stopped by a failed rollout in one cluster "
                                     "(the clusters after it keep the previous desired state), by environment.",
                                     ["environment"], registry=self.registry)
        self._promotions = Counter(PREFIX + "environment_promotions", "Promotions between environments judged by "
                                   "the controller's policy, by target environment and outcome (promoted, refused, "
                                   "error).", ["environment", "outcome"], registry=self.registry)
        self.registry.register(_FleetState(members))
        self._all = CollectorRegistry(auto_describe=False)
        self._all.register(_Merged(self.registry, members))

    def wave_stopped(self, environment: str) -> None:
        self._wave_stopped.labels(environment=environment).inc()

    def environment_promotion(self, environment: str, _model: str, outcome: str) -> None:
        """agent.controller._env_promotion's metric (the model is in the audit record, not a label)."""
        self._promotions.labels(environment=environment, outcome=outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self._all)
