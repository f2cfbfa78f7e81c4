"""The model page's chart: each analysis query of a rollout (agent.rollout.analysis_queries, as
the controller judges it) over the rollout's time, for the new version (track canary) and the
stable one, from Prometheus' range API, drawn server-side as SVG geometry (the template writes
the <svg>: numbers only, nothing from outside but escaped labels).

Fetches run on a small pool of their own and are cached a few seconds; a page waits for them
at most `deadline` seconds (a Prometheus that does not answer does not hold the page: the chart
says so and the next poll shows what came back). Every point is validated by
`Prometheus.query_range` (non-finite or malformed points are dropped); any failure is "no data"
with a short reason, never an error page."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.rollout import RolloutState, analysis_queries
from agent.spec import MetricNames, Model, Monitor

log = logging.getLogger("agent.ui")

Points = list[tuple[float, float]]
WIDTH, HEIGHT = 640.0, 180.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 12.0, 10.0, 26.0


@dataclass(frozen=True)
class Line:
    series: str  # "new" | "stable"
    version: str
    path: str  # the SVG path's d ("" when no points)
    points: int


@dataclass(frozen=True)
class Chart:
    """One query's chart: its lines, axis ticks ((position, label)), the gate's bounds as
    horizontal lines (y position, label) and why it has no data ("" when it has)."""

    name: str
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    bounds: tuple[tuple[float, str], ...]
    nodata: str = ""
    width: float = WIDTH
    height: float = HEIGHT


def number(value: float) -> str:
    """A value for a label: 3 significant digits, no exponent below 1e-4."""
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def draw(name: str, series: Sequence[tuple[str, str, Points]], start: float, end: float,
         bounds: Sequence[tuple[str, float | None]] = (), nodata: str = "") -> Chart:
    """The chart of `series` ((series, version, points)) between unix times start and end;
    `bounds`: (label, value) lines of the gate (None: none)."""
    end = max(end, start + 1.0)
    finite = [v for _, _, pts in series for _, v in pts if math.isfinite(v)]
    limits = [b for _, b in bounds if b is not None and math.isfinite(b)]
    top = max([*finite, *limits, 0.0])
    bottom = min([*finite, *limits, 0.0])
    if top == bottom:
        top = bottom + 1.0
    top += (top - bottom) * 0.08
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (min(max(t, start), end) - start) / (end - start) * plot_w

    def y(v: float) -> float:
        return TOP + (top - v) / (top - bottom) * plot_h

    lines = []
    for kind, version, pts in series:
        shown = [(t, v) for t, v in pts if math.isfinite(t) and math.isfinite(v) and start <= t <= end]
        d = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f} {y(v):.1f}" for i, (t, v) in enumerate(shown))
        lines.append(Line(kind, version, d, len(shown)))
    y_ticks = tuple((y(v), number(v)) for v in (bottom, (top + bottom) / 2, top))
    x_ticks = tuple((x(t), _clock(t)) for t in (start, (start + end) / 2, end))
    shown_bounds = tuple((y(b), f"{label} {number(b)}") for label, b in bounds
                         if b is not None and math.isfinite(b) and bottom <= b <= top)
    empty = not any(line.points for line in lines)
    return Chart(name, tuple(lines), y_ticks, x_ticks, shown_bounds, nodata or ("no data" if empty else ""))


@dataclass(frozen=True)
class Charts:
    """What a model page shows of its rollout's metrics: charts, or why there are none."""

    charts: tuple[Chart, ...]
    note: str = ""


class ChartSource:
    """Fetches and caches the charts of rollouts (see the module docstring). `close()` ends the
    pool (a fetch in progress ends by the Prometheus client's own timeout)."""

    def __init__(self, *, ttl: float = 5.0, deadline: float = 2.0, points: int = 120) -> None:
        self.ttl, self.deadline, self.points = ttl, deadline, points
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], tuple[float, Future[Charts]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-ui-chart")
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def charts(self, prometheus: Any, model: Model, monitors: Sequence[Monitor], metrics: MetricNames,
               state: RolloutState, now: float) -> Charts:
        if prometheus is None:
            return Charts((), "no Prometheus is configured (--prometheus-url): no chart")
        if model.rollout is None:
            return Charts((), "")
        window = model.rollout.interval
        try:
            new = analysis_queries(model, monitors, metrics, state.version, "canary", window)
            old = analysis_queries(model, monitors, metrics, state.stable, "stable", window)
        except ValueError as exc:
            return Charts((), f"no chart: {exc}")
        if not new:
            return Charts((), "the rollout has no analysis queries: no chart")
        start = min([float(h.get("at", state.step_started)) for h in state.history] + [state.step_started])
        ended = state.phase not in ("Progressing", "Paused")
        end = max((float(h.get("at", 0)) for h in state.history), default=now) if ended else now
        end = max(end, start + 60.0)  # the axis: at least a minute, so a young rollout's first points show
        if not (math.isfinite(start) and math.isfinite(end) and 0 < start < 1e11 and end < 1e11):
            return Charts((), "no chart: the rollout's times do not read as times")
        key = (id(prometheus), model.key, state.version, state.stable, tuple(q.expr for q in new), start,
               end if ended else None)
        mono = time.monotonic()
        with self._lock:
            if self._closed:
                return Charts((), "no chart: the server is stopping")
            cached = self._cache.get(key)
            if cached is None or (mono - cached[0] > self.ttl and cached[1].done()):
                future = self._pool.submit(self._fetch, prometheus, new, old, state, start, end, now)
                self._cache[key] = (mono, future)
                for k in [k for k, (at, f) in self._cache.items() if mono - at > 60 and f.done()]:
                    del self._cache[k]
                fresh = cached[1] if cached is not None else None  # stale answer while the new one comes
            else:
                future, fresh = cached[1], None
        try:
            return future.result(timeout=self.deadline)
        except TimeoutError:
            if fresh is not None and fresh.done() and fresh.exception() is None:
                return fresh.result()
            return Charts((), f"Prometheus did not answer within {self.deadline:g} s: no chart yet")
        except Exception:  # cancelled as the server stops
            return Charts((), "no chart: the server is stopping")

    def _fetch(self, prometheus: Any, new: Sequence[Any], old: Sequence[Any], state: RolloutState,
               start: float, end: float, now: float) -> Charts:
        # asked up to now only: Prometheus answers a range into the future with the last samples'
        # lookback, a line that falls off as they age (a young rollout's minute-wide axis)
        until = max(start + 1.0, min(end, now))
        step = max(1.0, (until - start) / self.points)
        stable = {q.name: q for q in old}
        charts = []
        for q in new:
            series: list[tuple[str, str, Points]] = []
            why = ""
            for kind, version, query in (("new", state.version, q), ("stable", state.stable, stable.get(q.name))):
                if query is None:
                    continue
                if self._closed:  # stopping: no more queries (each could wait for the client's timeout)
                    return Charts((), "no chart: the server is stopping")
                try:
                    series.append((kind, version, prometheus.query_range(query.expr, start, until, step)))
                except Exception as exc:  # a MetricsError (or anything a broken peer provokes): no data
                    log.debug("chart %s of %s: %s", q.name, kind, exc)
                    why = why or "no data: Prometheus did not answer the query"
                    series.append((kind, version, []))
            charts.append(draw(q.name, series, start, end, (("min", q.min), ("max", q.max)), why))
        return Charts(tuple(charts))
