"""What a rollout step is judged on: PromQL queries for the new version only, and the verdict
on their values. Pure: the caller runs the queries (Prometheus) and passes the numbers in."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agent.finite import finite, shown, within
from agent.render import expression
from agent.spec import MetricNames, Model, Monitor, MonitorRule

Source = Literal["rule", "check", "requests"]

REQUESTS = "requests"

# Only `{identifier}` tokens are placeholders: a PromQL selector `{a="b"}` or a range `[5m]`
# never matches, so checks need no doubled braces.
_PLACEHOLDER = re.compile(r"\{(namespace|model|version|track|interval)\}")


def _escape(value: str) -> str:
    """A PromQL double-quoted string body (the same escaping the rendered alert rules use)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Query:
    """One number to fetch for the new version and the bounds it must stay within."""

    name: str  # the rule's or check's name, or "requests"
    expr: str
    min: float | None
    max: float | None
    source: Source


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one query. ok None: not judged (no data, or too few requests yet), which
    neither fails nor advances a step."""

    name: str
    value: float | None
    ok: bool | None
    message: str


def _rule(model: Model, monitors: Sequence[Monitor], name: str) -> tuple[Monitor, MonitorRule]:
    for monitor in monitors:
        if monitor.model_key == model.key:
            for rule in monitor.rules:
                if rule.name == name:
                    return monitor, rule
    raise ValueError(f"{model.key}: rollout analysis names rule {name!r}, which no Monitor of the model has")


def analysis_queries(
    model: Model, monitors: Sequence[Monitor], metrics: MetricNames, version: str, track: str, window: str
) -> list[Query]:
    """The queries that judge one step of `model`'s rollout of `version`.

    Monitor rules keep their PromQL but are narrowed to the new version's series (`version`,
    and `track` unless empty) and read over `window` (the step interval), so a step is judged on
    its own traffic and not on the stable version's or an earlier step's. Names are the keys of
    the values `judge` takes, so they must be unique (ValueError otherwise, or for a rule name
    no Monitor of the model has).
    """
    analysis = model.rollout.analysis if model.rollout else None
    if analysis is None:
        return []
    labels = {"version": version, **({"track": track} if track else {})}
    queries: list[Query] = []
    for name in analysis.rules:
        monitor, rule = _rule(model, monitors, name)
        expr = expression(monitor, rule, metrics, labels=labels, window=window, compare=False)
        queries.append(Query(name, expr, None, rule.threshold, "rule"))
    values = {"namespace": model.namespace, "model": model.name, "version": version, "track": track}
    for check in analysis.checks:
        expr = _PLACEHOLDER.sub(lambda m: window if m[1] == "interval" else _escape(values[m[1]]), check.query)
        queries.append(Query(check.name, expr, check.min, check.max, "check"))
    if analysis.min_requests > 0:
        sel = ",".join(f'{k}="{_escape(v)}"' for k, v in
                       {"namespace": model.namespace, "model": model.name, **labels}.items())
        expr = f"sum(increase({metrics.requests_total}{{{sel}}}[{window}]))"
        queries.append(Query(REQUESTS, expr, float(analysis.min_requests), None, "requests"))
    seen: set[str] = set()
    for q in queries:
        if q.name in seen:
            raise ValueError(f"{model.key}: two analysis queries are named {q.name!r}")
        seen.add(q.name)
    return queries


def _fmt(value: float) -> str:
    return shown(value)


def _bounds(q: Query) -> str:
    parts = [f"min {_fmt(q.min)}" if q.min is not None else "", f"max {_fmt(q.max)}" if q.max is not None else ""]
    return ", ".join(p for p in parts if p) or "no bounds"


def _verdict(q: Query, value: float) -> tuple[bool | None, str]:
    ok = within(value, q.min, q.max)
    if ok is None:  # a bound that is not finite: Git's loader refuses it, so this is a broken caller
        return None, f"{q.name} {_fmt(value)} not judged: a bound is not a finite number ({_bounds(q)})"
    if not ok and q.min is not None and value < q.min:
        return False, f"{q.name} {_fmt(value)} < min {_fmt(q.min)}"
    if not ok and q.max is not None:
        return False, f"{q.name} {_fmt(value)} > max {_fmt(q.max)}"
    return True, f"{q.name} {_fmt(value)} ok ({_bounds(q)})"


def judge(queries: Sequence[Query], values: Mapping[str, float | None],
          errors: Mapping[str, str] | None = None) -> list[CheckResult]:
    """One result per query, in order. Not judged (ok None, which neither fails nor advances a
    step): a missing value (no data), a value that is not finite (NaN, +Inf, -Inf: +Inf would
    pass any min and -Inf any max), and a query in `errors` (name -> why Prometheus' answer
    could not be used). While the new version has served fewer than `min_requests` in the
    window (or that count is not judged), nothing else is judged either: a handful of requests
    says nothing about an error rate or a p95."""
    errors = errors or {}

    def read(q: Query) -> tuple[float | None, float | None, str | None]:
        """(the value to record, the finite value to judge, why it is not judged)"""
        if q.name in errors:
            return None, None, f"not judged: {errors[q.name]}"
        raw = values.get(q.name)
        if raw is None:
            return None, None, None
        number = finite(raw)
        if number is None:
            nan = isinstance(raw, float) and math.isnan(raw)
            return (None if nan else float(raw)), None, f"{_fmt(float(raw))} is not a finite number: not judged"
        return number, number, None

    starved: str | None = None
    for q in queries:
        if q.source == "requests":
            _, v, why = read(q)
            if why is not None:
                starved = f"requests {why}"
            elif v is None or (q.min is not None and not within(v, q.min)):
                starved = f"requests {_fmt(v or 0.0)} < min {_fmt(q.min or 0.0)}"
    results = []
    for q in queries:
        shown_value, v, why = read(q)
        if q.source == "requests" and starved is not None:
            results.append(CheckResult(q.name, shown_value, None, f"{starved} (waiting for data)"))
        elif why is not None:
            results.append(CheckResult(q.name, shown_value, None, f"{q.name} {why}"))
        elif starved is not None:
            text = "no data" if v is None else _fmt(v)
            results.append(CheckResult(q.name, v, None, f"{q.name} {text} not judged: {starved}"))
        elif v is None:
            results.append(CheckResult(q.name, None, None, f"{q.name}: no data (waiting for data)"))
        else:
            ok, message = _verdict(q, v)
            results.append(CheckResult(q.name, v, ok, message))
    return results
