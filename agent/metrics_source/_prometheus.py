"""The agent's Prometheus client: instant and range queries and active alerts over the HTTP API.

Standard library only, over agent._http's transport (shared with agent.forge and the MLflow
client): every request has a timeout and a body cap, redirects are refused (they would carry the
bearer token to whatever host they name). Every failure is a MetricsError naming the API path,
the HTTP status and Prometheus' own errorType/error, with the token scrubbed from anything
echoed back. A query answers one number or None (no data, NaN): a rollout analysis compares
numbers to thresholds, and an expression that matches several series is a mistake in it, not
something to silently aggregate. An answer is read strictly: anything but a scalar or an instant
vector of one [time, "value"] sample (a matrix, a sample value that is not a number as the API
writes them, NaN/Infinity literals, a body over the size limit) is a MetricsError, never a
number. +Inf and -Inf are returned as they are; the analysis does not judge them (agent.finite).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent._http import Transport, TransportError
from agent.errors import AgentError

__all__ = ["MetricsError", "Prometheus"]

MAX_BODY = 32 * 1024 * 1024


class MetricsError(AgentError):
    """Prometheus could not be asked, refused the question, or answered something unusable.
    `unreachable`: set when Prometheus itself could not be reached or did not answer (not the
    query's fault): where, and why, in a few words."""

    def __init__(self, message: str, *, unreachable: str = "") -> None:
        super().__init__(message)
        self.unreachable = unreachable


# A sample value as the HTTP API writes it (Go's strconv.FormatFloat): a decimal, or NaN/+Inf/-Inf.
_SAMPLE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN")


def _shown(raw: Any) -> str:
    """Something Prometheus answered, for an error message: JSON, cut short."""
    try:
        text = json.dumps(raw, ensure_ascii=True, sort_keys=True)
    except (TypeError, ValueError):
        text = "(not JSON)"
    return text if len(text) <= 80 else text[:77] + "..."


def _number(raw: Any) -> float | None:
    """A sample value ("1.5", "NaN", "+Inf") as a float; None for NaN (no meaningful value).
    +Inf and -Inf are returned as they are: the analysis does not judge them (agent.finite)."""
    if not isinstance(raw, str) or len(raw) > 64 or not _SAMPLE.fullmatch(raw):
        raise MetricsError(f"not a sample value: {_shown(raw)}")
    value = float(raw)
    return None if math.isnan(value) else value


# transport failures that mean no answer at all (not a refused or unusable one)
_UNREACHABLE = ("timeout", "unreachable", "connection", "certificate", "tls")


def _refuse_constant(name: str) -> Any:
    """JSON has no NaN or Infinity: Python's parser would take them, the API never sends them."""
    raise ValueError(f"{name} is not JSON")


class Prometheus:
    """One Prometheus (or a compatible API: Thanos, Mimir, a proxy path prefix) at url."""

    def __init__(self, url: str, *, timeout: float = 10.0, token: str | None = None,
                 ca_file: str | Path | None = None, max_body: int = MAX_BODY) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MetricsError(f"not an http(s) URL: {url!r}")
        self.timeout = timeout
        try:
            self._http = Transport(url, timeout=timeout, ca_file=ca_file, secrets=[token], max_body=max_body,
                                   headers={"Authorization": f"Bearer {token}"} if token else None)
        except TransportError as err:
            raise MetricsError(str(err)) from None
        self._shown = self._http.base  # shown in errors: never userinfo, only scheme, host and path

    def __repr__(self) -> str:
        return f"Prometheus({self._shown!r})"

    # --- API ------------------------------------------------------------------------------------

    def query(self, expr: str, at: float | None = None) -> float | None:
        """The value of expr now (or at unix time `at`): a scalar, or the one series of a vector.

        None when there is no data (empty vector) or the value is NaN (e.g. 0/0 rates).
        MetricsError when the vector has several series: the expression should aggregate."""
        form = {"query": expr, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            form["time"] = repr(float(at))
        data = self._call("POST", "/api/v1/query", form, what=f"query {expr!r}")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _number(self._sample(expr, result))
        if kind == "vector" and isinstance(result, list):
            if not result:
                return None
            if not all(isinstance(r, dict) and isinstance(r.get("metric", {}), dict) for r in result):
                raise MetricsError(f"query {expr!r}: malformed vector: {_shown(result)}")
            if len(result) > 1:
                first = ", ".join(_shown(r.get("metric", {})) for r in result[:2])
                raise MetricsError(f"query {expr!r} returned {len(result)} series, expected one (aggregate it, "
                                   f"e.g. with sum()); the first two: {first}")
            return _number(self._sample(expr, result[0].get("value")))
        if isinstance(kind, str) and kind in ("matrix", "string", "vector"):
            raise MetricsError(f"query {expr!r} returned a {kind}, expected a scalar or an instant vector")
        raise MetricsError(f"query {expr!r}: not an instant query answer: resultType {_shown(kind)}")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """The one series of expr from `start` to `end` (unix times) every `step` seconds, as
        (time, value) points in time order: a chart's line. No series: []. Points that are not a
        [time, "value"] pair, or whose value is not finite (NaN, +Inf, -Inf), are left out (a
        chart draws what is a number); several series, or an answer that is not a matrix, is a
        MetricsError as for `query`."""
        for name, value in (("start", start), ("end", end), ("step", step)):
            if not math.isfinite(value):
                raise MetricsError(f"query_range {expr!r}: {name} is not a finite number")
        if step <= 0 or end < start:
            raise MetricsError(f"query_range {expr!r}: needs start <= end and a positive step")
        form = {"query": expr, "start": repr(float(start)), "end": repr(float(end)), "step": f"{step:g}",
                "timeout": f"{self.timeout:g}s"}
        data = self._call("POST", "/api/v1/query_range", form, what=f"query_range {expr!r}")
        kind, result = data.get("resultType"), data.get("result")
        if kind != "matrix" or not isinstance(result, list):
            raise MetricsError(f"query_range {expr!r}: not a range query answer: resultType {_shown(kind)}")
        if not result:
            return []
        if len(result) > 1:
            raise MetricsError(f"query_range {expr!r} returned {len(result)} series, expected one (aggregate it)")
        series = result[0]
        values = series.get("values") if isinstance(series, dict) else None
        if not isinstance(values, list):
            raise MetricsError(f"query_range {expr!r}: malformed series: {_shown(series)}")
        points: list[tuple[float, float]] = []
        for pair in values:
            try:
                point = _number(self._sample(expr, pair))
            except MetricsError:
                continue
            if point is not None and math.isfinite(point):
                points.append((float(pair[0]), point))
        points.sort()
        return points

    @staticmethod
    def _sample(expr: str, value: Any) -> Any:
        """The value of a [time, "value"] pair; MetricsError for anything else."""
        if not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool) \
                or not isinstance(value[0], int | float) or not math.isfinite(value[0]):
            raise MetricsError(f"query {expr!r}: malformed sample {_shown(value)}")
        return value[1]

    def query_many(self, exprs: Mapping[str, str]) -> dict[str, float | None]:
        """Each named expression's value; the first that fails raises, naming it."""
        values: dict[str, float | None] = {}
        for name, expr in exprs.items():
            try:
                values[name] = self.query(expr)
            except MetricsError as err:
                raise MetricsError(f"{name}: {err}") from err
        return values

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending and firing) alerts: each with labels, annotations, state,
        activeAt and value, as /api/v1/alerts has them."""
        data = self._call("GET", "/api/v1/alerts", None, what="alerts")
        alerts = data.get("alerts")
        if not isinstance(alerts, list):
            raise MetricsError(f"GET {self._shown}/api/v1/alerts: no alerts list in the answer")
        return [a for a in alerts if isinstance(a, dict)]

    def ready(self) -> bool:
        """Is Prometheus up and ready to serve queries (/-/ready answers 200)?"""
        try:
            return self._http.send("GET", "/-/ready").status == 200
        except TransportError:
            return False

    # --- HTTP -----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, form: Mapping[str, str] | None, *, what: str) -> dict[str, Any]:
        """One API call; its `data` on status success, else MetricsError."""
        where = f"{method} {self._shown}{path}"
        body, headers = None, None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            reply = self._http.send(method, path, body=body, headers=headers)
        except TransportError as err:
            down = f"{self._shown}: {err}" if err.kind in _UNREACHABLE else ""
            if err.kind == "unreachable":
                raise MetricsError(f"cannot connect to Prometheus at {self._shown}: {err} ({what})",
                                   unreachable=down) from None
            raise MetricsError(f"{where} ({what}): {err}", unreachable=down) from None
        raw, status = reply.body, reply.status
        try:
            doc = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # not JSON, NaN/Infinity literals, nesting too deep
            doc = None
        if not isinstance(doc, dict):
            first = raw.decode("utf-8", "replace").strip().splitlines()[:1]
            text = first[0][:200] if first else "(empty body)"
            raise MetricsError(self._http.scrub(f"{where} ({what}): HTTP {status}: not a Prometheus API answer: {text}"))
        if doc.get("status") != "success" or status >= 300:
            kind = doc.get("errorType") or "error"
            message = doc.get("error") or "(no message)"
            raise MetricsError(self._http.scrub(f"{where} ({what}): HTTP {status}: {kind}: {message}"))
        data = doc.get("data")
        if not isinstance(data, dict):
            raise MetricsError(f"{where} ({what}): no data in the answer")
        return data
