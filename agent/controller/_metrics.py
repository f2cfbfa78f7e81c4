"""The controller's Prometheus metrics, on a registry of its own.

Each `Metrics` has its own `CollectorRegistry` (not prometheus_client's global one), so two
controllers in one process, or two tests, never share or collide on a series. Label values are
closed sets (triggers, drift policies), so no caller can grow the number of series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.notify import RESULTS
from agent.rollout import HOLD_KINDS

PREFIX = "modelops_agent_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format that `generate_latest` writes, named as every Prometheus parses it."""

TRIGGERS = ("poll", "webhook", "watch", "resync", "startup", "rollout", "registry")
DRIFT_POLICIES = ("heal", "detect")
REGISTRY_EVENTS = ("moved", "refused", "error", "proposed", "proposal_error")
REFUSAL_REASONS = ("signature",)
ROLES = ("leader", "follower")  # leader: a replica that may write (any one without --leader-elect)
HOLD_REASONS = HOLD_KINDS  # why a rollout step is not judged

# From a no-op reconcile (a few GETs, well under a second) to a rollout that waits on the cluster.
RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))


class _LastCommit(Collector):
    """`last_synced_commit_info{commit=...} 1`, absent until the first sync. A collector of its
    own rather than a labelled Gauge, so a scrape never sees zero or two commits at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commit: str | None = None

    def set(self, commit: str) -> None:
        with self._lock:
            self._commit = commit

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            commit = self._commit
        family = GaugeMetricFamily(
            PREFIX + "last_synced_commit_info", "The commit of the last successful sync.", labels=["commit"]
        )
        if commit is not None:
            family.add_metric([commit], 1.0)
        yield family


class Metrics:
    """What the controller loop reports; `exposition()` is what /metrics serves."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._reconcile = Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Duration of a reconcile (observe, plan, apply), by what triggered it.",
            ["trigger"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self._passes = Counter(
            PREFIX + "passes",
            "Passes of the loop, by role: leader (it may write: the leader, or a replica without --leader-elect) "
            "or follower (a standby keeping its source current; its passes are not reconciles).",
            ["role"],
            registry=r,
        )
        self._applied = Counter(PREFIX + "objects_applied", "Objects created or updated.", registry=r)
        self._pruned = Counter(PREFIX + "objects_pruned", "Objects deleted by pruning.", registry=r)
        self._failed = Counter(PREFIX + "objects_failed", "Objects whose apply or delete failed.", registry=r)
        self._drift = Counter(
            PREFIX + "drift_events",
            "Objects found changed in the cluster by someone else, by drift policy.",
            ["policy"],
            registry=r,
        )
        self._synced_at = Gauge(
            PREFIX + "last_synced_timestamp_seconds",
            "Unix time of the last successful sync (0 before the first one).",
            registry=r,
        )
        self._last_commit = _LastCommit()
        r.register(self._last_commit)
        self._fetch_errors = Counter(PREFIX + "git_fetch_errors", "Failed fetches of the model repo.", registry=r)
        self._invalid = Counter(
            PREFIX + "invalid_commits", "Commits that failed validation (nothing of them applied).", registry=r
        )
        self._refused = Counter(
            PREFIX + "commits_refused", "Commits refused before validation, by reason (signature: unsigned, signed "
            "by a key the signers file does not allow, or a bad signature); nothing of them applied.",
            ["reason"], registry=r)
        self._rollout_transitions = Counter(
            PREFIX + "rollout_transitions", "Rollout state changes per model and kind (started, advanced, "
            "check-failed, rolled-back, succeeded, switched, aborted, promoted, finished, reset).",
            ["model", "kind"], registry=r)
        self._rollout_traffic = Gauge(PREFIX + "rollout_traffic_percent",
                                      "Live traffic share of the version a rollout brings in.", ["model"], registry=r)
        self._rollout_step = Gauge(
            PREFIX + "rollout_step", "The current step of a model's rollout, counted from 1 as `agent rollout status` "
            "shows it (step 1 of 3; blue-green: 1 preview, 2 switched); 0 once no rollout runs.", ["model"], registry=r)
        self._rollout_held = Gauge(
            PREFIX + "rollout_held", "1 while a model's rollout cannot advance because its step is not judged, by "
            "reason: no-prometheus (no Prometheus configured), prometheus (unreachable or not answering), requests "
            "(fewer than minRequests), not-judged (an answer that could not be used, or not a finite number), no-data; "
            "else 0.", ["model", "reason"], registry=r)
        self._rollout_invalid = Gauge(
            PREFIX + "rollout_state_invalid", "1 while the stored rollout state of a model does not parse or does not "
            "fit its declared rollout (its canary traffic is held until a human or Git acts), else 0.",
            ["model"], registry=r)
        self._rollout_invalid_reports = Counter(
            PREFIX + "rollout_state_invalid_reports", "Distinct invalid rollout states reported (Event and audit "
            "record) per model.", ["model"], registry=r)
        self._retrain_jobs = Counter(PREFIX + "retrain_jobs", "Retraining Jobs started by firing alerts "
                                     "(Monitor rules with action: retrain).", ["model", "rule"], registry=r)
        self._registry = Counter(PREFIX + "registry_events", "Model registry events, by kind: moved "
                                 "(a reference resolves to another version), refused (its version misses a gate), "
                                 "error (the registry did not answer), proposed (a promotion PR), proposal_error.",
                                 ["kind"], registry=r)
        self._leader = Gauge(PREFIX + "leader", "1 while this replica holds the leader Lease, else 0.", registry=r)
        self._queue = Gauge(PREFIX + "work_queue_depth", "Sync requests waiting to be handled.", registry=r)
        self._webhooks = Counter(
            PREFIX + "webhook_requests", "Webhook deliveries, by provider and HTTP status.", ["provider", "code"],
            registry=r,
        )
        self._notifications = Counter(
            PREFIX + "notifications", "Notifications (--notify) by target, its type (slack, cloudevents, "
            "commitStatus) and result: sent, failed (not delivered after its tries) or dropped (the target's queue "
            "was full, or the agent stopped first).", ["target", "type", "result"], registry=r)
        self._notification_queue = Gauge(PREFIX + "notification_queue_depth",
                                         "Notifications waiting to be sent, by target.", ["target"], registry=r)
        for trigger in TRIGGERS:  # every series exists from the start, so rate() sees the first event
            self._reconcile.labels(trigger=trigger)
        for role in ROLES:
            self._passes.labels(role=role)
        for policy in DRIFT_POLICIES:
            self._drift.labels(policy=policy)
        for kind in REGISTRY_EVENTS:
            self._registry.labels(kind=kind)
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason=reason)
        if process:
            ProcessCollector(namespace="", registry=r)

    def observe_reconcile(
        self, trigger: str, seconds: float, applied: int = 0, pruned: int = 0, failed: int = 0
    ) -> None:
        """One finished reconcile; `trigger` is one of TRIGGERS."""
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown reconcile trigger {trigger!r}; one of {', '.join(TRIGGERS)}")
        self._reconcile.labels(trigger=trigger).observe(seconds)
        _inc(self._applied, applied)
        _inc(self._pruned, pruned)
        _inc(self._failed, failed)

    def passed(self, role: str) -> None:
        """One pass of the loop done (whatever its outcome); `role` is one of ROLES."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        self._passes.labels(role=role).inc()

    def rollout(self, model: str, kind: str, step: int, traffic: int) -> None:
        """A rollout transition of `model` (started, advanced, rolled-back, succeeded, ...) and
        where it now stands."""
        self._rollout_transitions.labels(model=model, kind=kind).inc()
        self._rollout_traffic.labels(model=model).set(traffic)
        self._rollout_step.labels(model=model).set(step)

    def rollout_held(self, model: str, reason: str, held: bool) -> None:
        """The rollout of `model` holds (or no longer holds) for `reason`, one of HOLD_REASONS."""
        if reason not in HOLD_REASONS:
            raise ValueError(f"unknown hold reason {reason!r}; one of {', '.join(HOLD_REASONS)}")
        self._rollout_held.labels(model=model, reason=reason).set(1 if held else 0)

    def rollout_state_invalid(self, model: str, invalid: bool) -> None:
        """The stored rollout state of `model` is invalid (reported now) or valid again."""
        self._rollout_invalid.labels(model=model).set(1 if invalid else 0)
        if invalid:
            self._rollout_invalid_reports.labels(model=model).inc()

    def registry_event(self, kind: str, n: int = 1) -> None:
        """One of REGISTRY_EVENTS happened `n` times."""
        if kind not in REGISTRY_EVENTS:
            raise ValueError(f"unknown registry event {kind!r}; one of {', '.join(REGISTRY_EVENTS)}")
        self._registry.labels(kind=kind).inc(n)

    def retrain_job(self, model: str, rule: str) -> None:
        """A retraining Job started for `model` by its Monitor rule `rule`."""
        self._retrain_jobs.labels(model=model, rule=rule).inc()

    def drift(self, policy: str, n: int = 1) -> None:
        """`n` drifted objects seen under `policy` (heal: restored; detect: only reported)."""
        if policy not in DRIFT_POLICIES:
            raise ValueError(f"unknown drift policy {policy!r}; one of {', '.join(DRIFT_POLICIES)}")
        _inc(self._drift.labels(policy=policy), n)

    def synced(self, commit: str, when: float | None = None) -> None:
        """A successful sync of `commit` at Unix time `when` (now by default)."""
        self._last_commit.set(commit)
        self._synced_at.set(time.time() if when is None else when)

    def fetch_error(self) -> None:
        self._fetch_errors.inc()

    def invalid_commit(self) -> None:
        self._invalid.inc()

    def commit_refused(self, reason: str) -> None:
        """A commit refused for one of REFUSAL_REASONS (--verify-signatures)."""
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}; one of {', '.join(REFUSAL_REASONS)}")
        self._refused.labels(reason=reason).inc()

    def set_leader(self, leader: bool) -> None:
        self._leader.set(1 if leader else 0)

    def set_queue_depth(self, n: int) -> None:
        self._queue.set(n)

    def webhook(self, provider: str | None, code: int) -> None:
        """One webhook delivery answered with `code`; provider "unknown" when none was recognized."""
        self._webhooks.labels(provider=provider or "unknown", code=str(code)).inc()

    def notification(self, target: str, type: str, result: str) -> None:
        """One notification to the target `target` (configured names: a closed set) of `type`:
        one of agent.notify.RESULTS."""
        if result not in RESULTS:
            raise ValueError(f"unknown notification result {result!r}; one of {', '.join(RESULTS)}")
        self._notifications.labels(target=target, type=type, result=result).inc()

    def notification_queue(self, target: str, depth: int) -> None:
        self._notification_queue.labels(target=target).set(depth)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def _inc(counter: Counter, n: int) -> None:
    if n < 0:
        raise ValueError(f"a count cannot be negative: {n}")
    if n:
        counter.inc(n)
