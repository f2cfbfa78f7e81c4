"""Prometheus calls off the controller's loop thread, each with a deadline.

The loop reconciles everything of a target, one pass at a time; a Prometheus that hangs must
hold only what it judges (a rollout's step: not judged), not every other reconcile. So the
calls run in a few worker threads and the loop waits for them at most `deadline` seconds; a
call still running from an earlier pass is not started again (hung calls do not pile up: each
ends by the client's own request timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for
from typing import Any, TypeVar

from agent.metrics_source import MetricsError

T = TypeVar("T")

DEADLINE = 5.0  # seconds a pass waits for Prometheus' answers
WORKERS = 4


class PrometheusCalls:
    """`prometheus` (agent.metrics_source.Prometheus) called in worker threads."""

    def __init__(self, prometheus: Any, *, deadline: float = DEADLINE, workers: int = WORKERS) -> None:
        self.prometheus = prometheus
        self.deadline = deadline
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prometheus")
        self._running: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def submit(self, key: str, call: Callable[[], T]) -> Future[T] | None:
        """Start `call` in a worker; None while the previous call under `key` is still running."""
        with self._lock:
            running = self._running.get(key)
            if running is not None and not running.done():
                return None
            future = self._pool.submit(call)
            self._running[key] = future
            return future

    def query_each(self, key: str, exprs: dict[str, str]) -> Future[tuple[dict[str, float | None], dict[str, str]]] | None:
        """Each named expression's value, and for those that could not be read why not (name ->
        reason): one broken or garbage answer does not hide the others. None as `submit`."""
        def run() -> tuple[dict[str, float | None], dict[str, str]]:
            values: dict[str, float | None] = {}
            errors: dict[str, str] = {}
            for name, expr in exprs.items():
                if self._closed.is_set():
                    errors[name] = "the controller is stopping"
                    continue
                try:
                    values[name] = self.prometheus.query(expr)
                except MetricsError as err:
                    errors[name] = str(err)
            return values, errors

        return self.submit(key, run)

    def wait(self, futures: Iterable[Future[Any]], started: float) -> None:
        """Wait until every future is done or `deadline` seconds after `started` (monotonic)."""
        wait_for(list(futures), timeout=max(0.0, started + self.deadline - time.monotonic()))

    @property
    def late(self) -> str:
        return f"Prometheus did not answer within {self.deadline:g}s"

    busy = "Prometheus has not answered the previous query yet"

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus.alerts() within the deadline (for the Monitor actions); MetricsError when
        it does not answer in time."""
        future = self.submit("alerts", self.prometheus.alerts)
        if future is None:
            raise MetricsError(self.busy)
        try:
            result: list[dict[str, Any]] = future.result(timeout=self.deadline)
        except FutureTimeout:
            raise MetricsError(self.late) from None
        return result

    def close(self) -> None:
        """Stop taking calls; a running one ends by its own timeout (its thread is not waited for)."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
