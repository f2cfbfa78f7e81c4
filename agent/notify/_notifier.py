"""Delivery off the reconcile loop: one bounded queue and one worker thread per target, so a
slow or hanging receiver delays only its own messages, never a pass or another target.

`emit` only appends to each interested target's queue (a full queue drops the Event and counts
it). A worker sends each Event in order, retrying what may succeed later (no answer, 429, 5xx)
after 1 s, 2 s and 4 s (each ±20 % jitter, so many agents do not retry in step; a 429's
Retry-After is honoured up to 30 s); a 4xx other than 429 is not retried. A worker thread starts
with its target's first Event. Every outcome is counted: `modelops_agent_notifications_total{target,type,
result="sent|failed|dropped"}` and `modelops_agent_notification_queue_depth{target}`. Failures
are logged with the target's secrets scrubbed. `close(timeout)` stops taking Events, cuts any
back-off short, sends what it can within `timeout`, counts the rest as dropped and joins the
workers."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from agent.notify._channels import Channel, DeliveryError
from agent.notify._event import Event

log = logging.getLogger("modelops.notify")

QUEUE_SIZE = 1000  # Events waiting per target
RETRY_DELAYS = (1.0, 2.0, 4.0)  # seconds before the 2nd, 3rd and 4th try
MAX_RETRY_AFTER = 30.0  # seconds: a 429's Retry-After is honoured up to this
JITTER = 0.2  # each delay is drawn from [d * (1 - JITTER), d * (1 + JITTER)]
RESULTS = ("sent", "failed", "dropped")


class NotifyMetrics(Protocol):
    """What the notifier counts (agent.controller's Metrics and FleetMetrics)."""

    def notification(self, target: str, type: str, result: str) -> None: ...

    def notification_queue(self, target: str, depth: int) -> None: ...


def backoff(delays: Sequence[float], jitter: float, rng: random.Random) -> list[float]:
    """The waits before each retry: every delay of `delays` moved by up to ±`jitter` of itself."""
    return [d * (1.0 + jitter * (2.0 * rng.random() - 1.0)) for d in delays]


class _Worker:
    def __init__(self, channel: Channel, metrics: NotifyMetrics | None, size: int, delays: Sequence[float],
                 jitter: float, rng: random.Random) -> None:
        self.channel = channel
        self.metrics = metrics
        self.size = size
        self.delays = tuple(delays)
        self.jitter = jitter
        self.rng = rng
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._hurry = threading.Event()  # set at close: no more waiting between tries
        self.thread = threading.Thread(target=self._run, name=f"notify-{channel.name}", daemon=True)
        if metrics is not None:
            metrics.notification_queue(channel.name, 0)

    def _count(self, result: str, n: int = 1) -> None:
        if self.metrics is not None:
            for _ in range(n):
                self.metrics.notification(self.channel.name, self.channel.type, result)

    def _depth(self) -> None:
        if self.metrics is not None:
            self.metrics.notification_queue(self.channel.name, len(self._queue))

    def offer(self, event: Event) -> None:
        if not self.channel.accepts(event):
            return
        with self._cond:
            if self._closing or len(self._queue) >= self.size:
                full = not self._closing
                self._count("dropped")
                if full:
                    log.warning("notification target %s: its queue is full (%d); %s dropped", self.channel.name,
                                self.size, event.kind)
                return
            self._queue.append(event)
            self._depth()
            if self.thread.ident is None:  # started by the first Event
                self.thread.start()
            self._cond.notify()

    def close(self, deadline: float) -> None:
        with self._cond:
            self._closing = True
            self._deadline = deadline
            self._cond.notify()
        self._hurry.set()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self._closing and time.monotonic() >= self._deadline:
                    left = len(self._queue)
                    self._queue.clear()
                    self._depth()
                    self._count("dropped", left)
                    log.warning("notification target %s: %d notifications not sent before the agent stopped",
                                self.channel.name, left)
                    return
                event = self._queue.popleft()
                self._depth()
            self._send(event)

    def _send(self, event: Event) -> None:
        waits = backoff(self.delays, self.jitter, self.rng)
        tries = 0
        while True:
            tries += 1
            try:
                self.channel.deliver(event)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # a bug must not end the worker: the Event is counted failed
                # its type only: an exception's text may hold the target's URL
                log.debug("notification target %s: internal error %s", self.channel.name, type(exc).__name__)
                error = DeliveryError("an internal error of the agent", retry=False)
            else:
                self._count("sent")
                return
            if not error.retry or tries > len(waits):
                break
            wait = waits[tries - 1] if error.retry_after is None else min(max(error.retry_after, waits[tries - 1]),
                                                                           MAX_RETRY_AFTER)
            if self._hurry.wait(wait):
                break
            log.info("notification target %s: %s of %s not delivered (%s); trying again", self.channel.name,
                     event.kind, event.target, error)
        self._count("failed")
        log.error("notification target %s (%s): %s of %s not delivered after %d %s: %s", self.channel.name,
                  self.channel.type, event.kind, event.target, tries, "try" if tries == 1 else "tries", error)


class Notifier:
    """The Sink of `--notify`: Events to every target that wants them, off the caller's thread."""

    def __init__(self, channels: Sequence[Channel], metrics: NotifyMetrics | None = None, *,
                 queue_size: int = QUEUE_SIZE, delays: Sequence[float] = RETRY_DELAYS, jitter: float = JITTER,
                 rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.channels = list(channels)
        self._workers = [_Worker(c, metrics, queue_size, delays, jitter, rng) for c in self.channels]
        self._closed = False

    def emit(self, event: Event) -> None:
        """Queue `event` for each target that wants it; returns at once, never raises."""
        for worker in self._workers:
            try:
                worker.offer(event)
            except Exception:  # never the caller's problem
                log.exception("notification target %s: the event could not be queued", worker.channel.name)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking Events; send what is queued within `timeout` seconds (no back-off waits),
        drop the rest, and join the workers (a request under way ends by its own timeout)."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + max(0.0, timeout)
        for worker in self._workers:
            worker.close(deadline)
        for worker in self._workers:
            if worker.thread.ident is None:  # never had an Event
                continue
            worker.thread.join(max(0.0, deadline - time.monotonic()) + 6.0)
            if worker.thread.is_alive():
                log.warning("notification target %s: its worker did not stop in time", worker.channel.name)
        for channel in self.channels:
            channel.close()
