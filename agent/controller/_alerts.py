"""Monitor actions acted on: a firing alert of an `action: rollback` rule ends the model's
running rollout; one of an `action: retrain` rule starts a retraining Job from the rule's template.

Alerts come from two places, both optional: Prometheus' /api/v1/alerts, polled on each
controller pass when --prometheus-url is set, and Alertmanager's webhook, pushed to POST /alerts
(authenticated with the webhook secret). An alert acts only when its labels (namespace, model,
monitor, alertname) name a rule of the desired spec, so a stale or forged label set does
nothing; the rule's action is the spec's, not the alert's label.

Retraining is deduplicated through the API, not memory, so re-deliveries, a second source and
a restarted controller all agree: no Job is created while one of the same model and rule is
younger than the rule's cooldown (found by label, judged by creationTimestamp), and the Job's
name is derived from (rule, alert start), so re-deliveries of one episode name the same Job.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agent.cluster import Cluster, ClusterError
from agent.engine import Desired
from agent.errors import AgentError
from agent.render import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL, SOURCE_ANNOTATION, TARGET_LABEL
from agent.spec import Model, Monitor, MonitorRule, Spec

log = logging.getLogger("agent.controller.alerts")

RULE_LABEL = "modelops.dev/rule"
MONITOR_LABEL = "modelops.dev/monitor"
ALERT_ANNOTATION = "modelops.dev/alert"
ALERT_STARTED_ANNOTATION = "modelops.dev/alert-started-at"
MAX_ALERTS = 1000  # per Alertmanager delivery; its default group limit is far below
MAX_PUSHED = 1000  # alerts pushed and not yet acted on (a flood cannot grow memory)
PUSHED_TTL = 300.0  # a pushed alert not acted on within this long is dropped (a follower's, say):
# Alertmanager repeats what still fires, and an old push must not abort a later rollout
ACTIONS = ("rollback", "retrain")

Decision = Literal["create", "exists", "cooldown"]


@dataclass(frozen=True)
class FiringAlert:
    """A firing alert as either source gives it: its labels and when it started (RFC 3339;
    Prometheus' activeAt, when it became pending; Alertmanager's startsAt, which Prometheus sets
    when it fired: the two may differ by the rule's `for`, so dedup rests on the cooldown)."""

    labels: Mapping[str, str]
    starts_at: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Match:
    """A firing alert and the rule of the desired spec it is about."""

    alert: FiringAlert
    model: Model
    monitor: Monitor
    rule: MonitorRule


# --- parsing and auth (pure) ----------------------------------------------------------------
def _labels(raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return None
    return dict(raw)


def parse_alertmanager(body: bytes) -> list[FiringAlert]:
    """The firing alerts of an Alertmanager webhook delivery (version 4 JSON:
    `{"alerts": [{"status", "labels", "startsAt", ...}]}`); resolved ones are dropped. Raises
    ValueError on a body that is not that shape, so the sender is told (400)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    alerts = data.get("alerts") if isinstance(data, dict) else None
    if not isinstance(alerts, list):
        raise ValueError("no alerts list (expected Alertmanager's webhook JSON)")
    if len(alerts) > MAX_ALERTS:
        raise ValueError(f"over {MAX_ALERTS} alerts in one delivery")
    out = []
    for i, a in enumerate(alerts):
        labels = _labels(a.get("labels")) if isinstance(a, dict) else None
        if labels is None or not isinstance(a.get("status"), str) or not isinstance(a.get("startsAt"), str):
            raise ValueError(f"alerts[{i}]: needs status, labels (strings) and startsAt")
        if a["status"] == "firing":
            out.append(FiringAlert(labels, a["startsAt"]))
    return out


def from_prometheus(alerts: Iterable[Mapping[str, Any]]) -> list[FiringAlert]:
    """The firing (not pending) alerts of Prometheus' /api/v1/alerts answer."""
    out = []
    for a in alerts:
        labels = _labels(a.get("labels"))
        if labels is not None and a.get("state") == "firing" and isinstance(a.get("activeAt"), str):
            out.append(FiringAlert(labels, a["activeAt"]))
    return out


def bearer_ok(header: str | None, secret: bytes) -> bool:
    """Whether an Authorization header is `Bearer <secret>` (compared in constant time)."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), secret)


# --- matching and naming (pure) -------------------------------------------------------------
def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)


def alert_names(monitor: Monitor) -> dict[str, MonitorRule]:
    """alertname -> rule, named as agent.render's PrometheusRule names its alerts
    (`<Model><Rule>` in camel case; tests/unit/test_alerts.py holds the two together)."""
    return {f"{_camel(monitor.model)}{_camel(rule.name)}": rule for rule in monitor.rules}


def match(alerts: Iterable[FiringAlert], spec: Spec, actions: Sequence[str] = ACTIONS) -> list[Match]:
    """The alerts that name a rule of `spec` whose action is one of `actions`, one per
    (model, monitor, rule, start): the same alert from both sources counts once."""
    monitors = {(m.namespace, m.name, m.model): m for m in spec.monitors}
    names: dict[tuple[str, str, str], dict[str, MonitorRule]] = {}
    out: dict[tuple[str, str, str, str], Match] = {}
    for alert in alerts:
        key = (alert.labels.get("namespace", ""), alert.labels.get("monitor", ""), alert.labels.get("model", ""))
        monitor = monitors.get(key)
        model = spec.model(key[0], key[2]) if monitor is not None else None
        if monitor is None or model is None:
            continue
        if key not in names:
            names[key] = alert_names(monitor)
        rule = names[key].get(alert.name)
        if rule is None or rule.action not in actions:
            continue
        out.setdefault((model.key, monitor.name, rule.name, _instant(alert.starts_at)),
                       Match(alert, model, monitor, rule))
    return list(out.values())


def _instant(stamp: str) -> str:
    """An RFC 3339 time to the second, in UTC: Prometheus and Alertmanager write the same
    instant with different fractions, and the Job's name must not depend on which told us."""
    try:
        text = stamp.strip().replace("Z", "+00:00").replace("z", "+00:00")
        head, dot, rest = text.partition(".")
        if dot:  # drop the fraction (Python reads at most 6 digits; Go writes up to 9)
            rest = rest.lstrip("0123456789")
            text = head + rest
        return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return stamp


def _epoch(stamp: str) -> float | None:
    instant = _instant(stamp)
    try:
        return datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def job_name(m: Match) -> str:
    """`<model>-retrain-<hash of (monitor, rule, alert start)>`: one name per firing episode,
    so every delivery of it (and every controller) names the same Job."""
    digest = hashlib.sha256(
        f"{m.model.key}/{m.monitor.name}/{m.rule.name}@{_instant(m.alert.starts_at)}".encode()
    ).hexdigest()[:10]
    return f"{m.model.name[:63 - 19].rstrip('-')}-retrain-{digest}"


def retrain_decision(existing: Iterable[tuple[str, float | None]], name: str, now: float, cooldown: float) -> Decision:
    """Whether to create Job `name`, given the (name, creation time) of the Jobs of the same
    model and rule: not when it exists, nor while one is younger than the cooldown."""
    existing = list(existing)
    if any(n == name for n, _ in existing):
        return "exists"
    if any(created is not None and now - created < cooldown for _, created in existing):
        return "cooldown"
    return "create"


def selector(m: Match) -> str:
    """The label selector of the retrain Jobs of one model and rule."""
    return (f"{MANAGED_BY_LABEL}={MANAGED_BY},{MODEL_LABEL}={m.model.name},"
            f"{MONITOR_LABEL}={m.monitor.name},{RULE_LABEL}={m.rule.name}")


def retrain_job(m: Match, name: str, target: str) -> dict[str, Any]:
    """The Job to create: the rule's template in the model's namespace, named, labelled as the
    agent's, its containers told which model, version and alert (MODEL, MODEL_VERSION, ALERT)."""
    assert m.rule.retrain_job is not None
    job = copy.deepcopy(m.rule.retrain_job)
    meta = dict(job.get("metadata") or {})
    meta.pop("generateName", None)
    meta.update(name=name, namespace=m.model.namespace)
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY, TARGET_LABEL: target,
                      MODEL_LABEL: m.model.name, MONITOR_LABEL: m.monitor.name, RULE_LABEL: m.rule.name}
    meta["annotations"] = {**(meta.get("annotations") or {}), ALERT_ANNOTATION: m.alert.name,
                           ALERT_STARTED_ANNOTATION: _instant(m.alert.starts_at),
                           SOURCE_ANNOTATION: m.rule.retrain_job_template or ""}
    job["metadata"] = meta
    env = {"MODEL": m.model.name, "MODEL_VERSION": m.model.stable, "ALERT": m.alert.name}
    for c in job["spec"]["template"]["spec"]["containers"]:
        kept = [e for e in c.get("env") or [] if not (isinstance(e, dict) and e.get("name") in env)]
        c["env"] = [*kept, *({"name": k, "value": v} for k, v in env.items())]
    return job


# --- acting (I/O) ---------------------------------------------------------------------------
class AlertActions:
    """Acts on the firing alerts each controller pass (loop thread); `push` takes Alertmanager's
    deliveries from the HTTP thread for the next pass. Only the leader's pass calls `act`."""

    def __init__(self, cluster: Cluster, prometheus: Any | None,
                 abort: Callable[[Desired, str, str], bool],
                 record: Callable[..., None], event: Callable[[Model, str, str, bool], None],
                 metric: Callable[[str, str], None]) -> None:
        self.cluster = cluster
        self.prometheus = prometheus  # agent.metrics_source.Prometheus, or None: pushed alerts only
        self.abort = abort  # RolloutDriver.abort_from_alert
        self.record = record
        self.event = event
        self.metric = metric
        self._pushed: list[tuple[float, FiringAlert]] = []  # (monotonic time pushed, alert)
        self._lock = threading.Lock()
        # (model, monitor, rule) -> creation time of its newest Job seen: spares the API a list
        # per tick while an alert keeps firing (the API stays the truth when this is empty)
        self._recent: dict[tuple[str, str, str], float] = {}

    def push(self, alerts: Iterable[FiringAlert]) -> None:
        now = time.monotonic()
        with self._lock:
            self._pushed = [*self._pushed, *((now, a) for a in alerts)][-MAX_PUSHED:]

    def act(self, desired: Desired) -> None:
        """Act on every firing alert of a rollback/retrain rule of `desired`. Never raises: a
        failure is logged and the next pass tries again (every action is idempotent)."""
        with self._lock:
            pushed, self._pushed = self._pushed, []
        alerts = [a for at, a in pushed if time.monotonic() - at < PUSHED_TTL]
        spec = desired.spec
        wanted = any(r.action in ACTIONS for mon in spec.monitors for r in mon.rules)
        if not wanted:
            return
        if self.prometheus is not None:
            try:
                alerts += from_prometheus(self.prometheus.alerts())
            except AgentError as exc:
                log.warning("could not read the firing alerts from Prometheus: %s", exc)
        for m in match(alerts, spec):
            try:
                if m.rule.action == "rollback":
                    if self.abort(desired, m.model.key, f"alert {m.alert.name}"):
                        log.warning("alert %s ended the rollout of %s", m.alert.name, m.model.key)
                else:
                    self._retrain(m, spec.config.name)
            except (AgentError, ClusterError) as exc:
                log.error("alert %s on %s: %s", m.alert.name, m.model.key, exc)

    def _retrain(self, m: Match, target: str) -> None:
        key = (m.model.key, m.monitor.name, m.rule.name)
        now = time.time()
        cooldown = m.rule.retrain_cooldown_seconds
        if now - self._recent.get(key, float("-inf")) < cooldown:
            return
        name = job_name(m)
        path = f"/apis/batch/v1/namespaces/{m.model.namespace}/jobs"
        listed = self.cluster.request("GET", path, query={"labelSelector": selector(m)})
        existing = [(str(j["metadata"]["name"]), _epoch(str(j["metadata"].get("creationTimestamp", ""))))
                    for j in (listed or {}).get("items", [])]
        decision = retrain_decision(existing, name, now, cooldown)
        if decision != "create":
            newest = max((c for _, c in existing if c is not None), default=now)
            self._recent[key] = newest
            log.debug("retrain of %s for %s: %s", m.model.key, m.rule.name, decision)
            return
        try:
            self.cluster.request("POST", path, body=retrain_job(m, name, target), retries=0)
        except ClusterError as exc:
            if exc.status == 409:  # another pass or controller created it just now
                self._recent[key] = now
                return
            raise
        self._recent[key] = now
        log.warning("alert %s: started retraining Job %s/%s", m.alert.name, m.model.namespace, name)
        self.record("retrain", model=m.model.key, monitor=m.monitor.name, rule=m.rule.name, job=name,
                    alert=m.alert.name, alert_started_at=_instant(m.alert.starts_at),
                    template=m.rule.retrain_job_template, version=m.model.stable)
        self.event(m.model, "RetrainStarted",
                   f"alert {m.alert.name} started Job {name} from {m.rule.retrain_job_template}", False)
        self.metric(m.model.key, m.rule.name)
