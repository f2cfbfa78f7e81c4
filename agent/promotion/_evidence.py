"""Promotion between environments on live evidence: may model M move to environment P from the
environment S it promotes from? What S serves (S's overlaid stable, version V) must have served
there for P's soak, with its analysis healthy over that whole window, in S's Prometheus.

The queries (all for V's series only, narrowed by namespace, model and version):
- served: `time() - min_over_time(timestamp(sum(requests{V}))[L:r])`, the age of the earliest
  moment within a lookback L = soak + margin at which V's requests series existed, read at a
  resolution r of L/240 (at least 1 s). The margin (a quarter of the soak, at least a minute)
  lets a version that served longer than the soak show more than the soak, so "served >= soak"
  is decided with room, not at the window's edge. The estimate never exceeds the truth: a
  subquery step sees the series only once a sample of it exists. A series that is gone (V no
  longer served) is caught by the request count over the window and by the rules.
- each Monitor rule and check of M's analysis (the rollout of M in P, else in S, else every
  rule of M's Monitors), as a rollout step judges them (agent.rollout.analysis_queries), over
  the soak window instead of a step's interval, and the requests V served in that window
  (at least one, or the analysis' minRequests).
Every answer is validated (agent.rollout.judge): no data, a value that is not finite, or an
answer Prometheus could not give refuses; only every value within its bounds passes.

Pure: the caller passes a client with `query(expr, at)` (agent.metrics_source.Prometheus).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.finite import finite, shown
from agent.promotion._change import PromoteError
from agent.rollout import Query, analysis_queries, judge
from agent.spec import Analysis, Model, Rollout, Spec, environment


class Client(Protocol):
    def query(self, expr: str, at: float | None = None) -> float | None: ...


SERVED = "served"


@dataclass(frozen=True)
class Metric:
    """One figure of the evidence over the soak window, with its bounds and verdict."""

    name: str
    value: float | None
    min: float | None
    max: float | None
    ok: bool | None
    message: str


@dataclass(frozen=True)
class EvidencePlan:
    """What to ask and of whom: model `key` at `version` (what `source` serves) for `target`
    (whose stable is `current`); its queries over `window` seconds, the served query."""

    key: str
    name: str
    namespace: str
    source: str
    target: str
    version: str
    current: str
    soak: str
    soak_seconds: float
    prometheus: str | None  # the source environment's Prometheus (None: the caller names one)
    queries: tuple[Query, ...]
    served_expr: str


@dataclass(frozen=True)
class Evidence:
    """The figures and the verdict: `reasons` empty when the promotion may be made."""

    plan: EvidencePlan
    served_seconds: float | None
    metrics: tuple[Metric, ...]
    prometheus: str
    commit: str
    reasons: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        p = self.plan
        return {"model": p.key, "version": p.version, "from": p.source, "to": p.target, "current": p.current,
                "soak": p.soak, "soakSeconds": p.soak_seconds, "servedSeconds": self.served_seconds,
                "prometheus": self.prometheus, "commit": self.commit or None, "holds": self.holds,
                "reasons": list(self.reasons),
                "metrics": [{"name": m.name, "value": m.value, "min": m.min, "max": m.max, "ok": m.ok,
                             "message": m.message} for m in self.metrics]}

    def lines(self) -> list[str]:
        """The evidence as Markdown list items (a commit message's body, a PR's, the CLI's text)."""
        p = self.plan
        served = "no data" if self.served_seconds is None else duration(self.served_seconds)
        out = [f"- served: {p.version} has served in {p.source} for {served} (soak {p.soak})"]
        for m in self.metrics:
            verdict = {True: "ok", False: "FAILED", None: "not judged"}[m.ok]
            value = "no data" if m.value is None else shown(m.value)
            out.append(f"- {m.name}: {value} over {p.soak} ({bounds(m)}): {verdict}")
        out.append(f"- {p.source} commit: {self.commit or 'unknown'}")
        return out

    def message(self) -> str:
        """The commit message: summary, the evidence, the trailers."""
        p = self.plan
        return (f"promote {p.key} to {p.target}: {p.version} from {p.source} (was {p.current})\n\n"
                f"Evidence from {p.source} (Prometheus {self.prometheus}), over the soak window of {p.soak}:\n"
                + "\n".join(self.lines()) + "\n\n"
                f"Model: {p.key}\nAction: stable\nFrom-Version: {p.current}\nTo-Version: {p.version}\n"
                f"From-Environment: {p.source}\nTo-Environment: {p.target}\n")


def bounds(m: Metric) -> str:
    parts = [f"min {shown(m.min)}" if m.min is not None else "", f"max {shown(m.max)}" if m.max is not None else ""]
    return ", ".join(x for x in parts if x) or "no bounds"


def duration(seconds: float) -> str:
    """3725 -> "1h2m5s"."""
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


def shown_url(url: str) -> str:
    """A URL without its userinfo, query or fragment (never a secret in output)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _sel(model: Model, version: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"')
    return f'namespace="{esc(model.namespace)}",model="{esc(model.name)}",version="{esc(version)}"'


def plan_evidence(spec: Spec, name: str, namespace: str | None, to: str) -> EvidencePlan:
    """The evidence to gather for promoting model `name` to environment `to` (a whole-repo
    Spec). PromoteError when `to` promotes from no environment, the model is not there, or the
    version is there already."""
    target = environment(spec, to)
    if target.promotes_from is None:
        raise PromoteError(f"environment {to!r} promotes from no environment (spec.promotesFrom)")
    source = environment(spec, target.promotes_from)
    found = [m for m in target.models if m.name == name and (namespace is None or m.namespace == namespace)]
    if not found:
        raise PromoteError(f"no model {name!r} in environment {to!r}")
    if len(found) > 1:
        raise PromoteError(f"model {name!r} is in several namespaces ({', '.join(m.namespace for m in found)}): "
                           "name one with -n NAMESPACE")
    into = found[0]
    origin = source.model(into.namespace, into.name)
    assert origin is not None  # every environment holds every model of the repo
    version = origin.stable
    if version == into.stable:
        raise PromoteError(f"{into.key} {version} is stable in {to!r} already (what {source.name!r} serves)")
    rollout = into.rollout or origin.rollout
    analysis = rollout.analysis if rollout is not None else None
    if analysis is None or not (analysis.rules or analysis.checks):
        rules = tuple(r.name for mon in spec.monitors if mon.model_key == into.key for r in mon.rules)
        analysis = Analysis(rules=rules, min_requests=analysis.min_requests if analysis else 0)
    analysis = dataclasses.replace(analysis, min_requests=max(analysis.min_requests, 1))
    judged = dataclasses.replace(origin, rollout=Rollout(strategy="canary", analysis=analysis))
    soak = max(target.soak_seconds, 1.0)
    window = f"{math.ceil(soak)}s"
    queries = tuple(analysis_queries(judged, spec.monitors, spec.config.metrics, version, "", window))
    lookback = math.ceil(soak + max(60.0, soak / 4))
    step = max(1, lookback // 240)
    served = (f"time() - min_over_time(timestamp(sum({spec.config.metrics.requests_total}{{{_sel(origin, version)}}}))"
              f"[{lookback}s:{step}s])")
    return EvidencePlan(key=into.key, name=into.name, namespace=into.namespace, source=source.name, target=to,
                        version=version, current=into.stable, soak=target.soak, soak_seconds=target.soak_seconds,
                        prometheus=source.prometheus, queries=queries, served_expr=served)


def judge_evidence(plan: EvidencePlan, values: Mapping[str, float | None], errors: Mapping[str, str],
                   prometheus: str, commit: str = "") -> Evidence:
    """The verdict on the answers (name -> value; `errors`: name -> why no usable answer; the
    served answer under SERVED). Refused with a reason for each figure that does not pass."""
    reasons: list[str] = []
    served = finite(values.get(SERVED)) if SERVED not in errors else None
    if SERVED in errors:
        reasons.append(f"how long {plan.version} served in {plan.source} is unknown: {errors[SERVED]}")
    elif served is None or served < 0:
        reasons.append(f"no data: no requests series of {plan.key} {plan.version} in {plan.source}'s Prometheus "
                       f"within the last {plan.soak} and its margin")
        served = None
    elif served + 1e-6 < plan.soak_seconds:
        reasons.append(f"{plan.version} has served in {plan.source} for {duration(served)}, less than the soak "
                       f"of {plan.soak}")
    results = judge(plan.queries, values, {k: v for k, v in errors.items() if k != SERVED})
    metrics = []
    for q, r in zip(plan.queries, results, strict=True):
        metrics.append(Metric(q.name, r.value, q.min, q.max, r.ok, r.message))
        if r.ok is False:
            reasons.append(f"{r.message} over {plan.soak}")
        elif r.ok is None:
            reasons.append(f"{r.message.replace(' (waiting for data)', '')}: not judged over {plan.soak}")
    return Evidence(plan=plan, served_seconds=served, metrics=tuple(metrics), prometheus=shown_url(prometheus),
                    commit=commit, reasons=tuple(reasons))


def gather(plan: EvidencePlan, client: Client, prometheus: str, now: float, commit: str = "",
           failure: type[Exception] = Exception) -> Evidence:
    """Ask `client` (at unix time `now`) every query of `plan` and judge the answers. An answer
    that raises `failure` (agent.metrics_source.MetricsError) is an error of that figure."""
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, expr in [(SERVED, plan.served_expr), *((q.name, q.expr) for q in plan.queries)]:
        try:
            values[name] = client.query(expr, at=now)
        except failure as exc:
            errors[name] = str(exc)
    return judge_evidence(plan, values, errors, prometheus, commit)
