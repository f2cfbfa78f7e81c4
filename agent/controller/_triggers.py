"""The trigger queue: every reason for a pass, coalesced, and the loop's timers.

Producers (the webhook, Alertmanager, the watch cache, the `--watch-dir` observer
(`watch_directory`), leader election) call `request(trigger)` from any thread; the loop thread alone calls `take(timeout)`.
A trigger already waiting is not queued twice, so a burst of watch events costs one pass.
`Timers` (loop thread only) says how long the loop may wait and which timer fired when it
waited in vain: the poll, the resync, a rollout's tick, a registry tick (kopf `_core/reactor`
queueing, apart from processing).
"""

from __future__ import annotations

import os
import queue
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

Trigger = Literal["poll", "webhook", "watch", "resync", "startup", "rollout", "registry"]

NEVER = float("inf")


class TriggerQueue:
    """Coalesced triggers. `on_depth(n)` is told the number waiting (the queue-depth metric)."""

    def __init__(self, on_depth: Callable[[int], None] = lambda _n: None) -> None:
        self._queue: queue.Queue[Trigger | None] = queue.Queue()
        self._pending: set[Trigger] = set()
        self._lock = threading.Lock()
        self._on_depth = on_depth

    def request(self, trigger: Trigger) -> None:
        """Ask for a pass; a trigger already waiting is not queued twice (any thread)."""
        with self._lock:
            if trigger in self._pending:
                return
            self._pending.add(trigger)
            self._on_depth(len(self._pending))
        self._queue.put(trigger)

    def wake(self) -> None:
        """Make a waiting `take` return None at once (stop)."""
        self._queue.put(None)

    def take(self, timeout: float) -> Trigger | None:
        """The next trigger, or None when `timeout` seconds passed without one or on `wake()`."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is not None:
            with self._lock:
                self._pending.discard(item)
                self._on_depth(len(self._pending))
        return item

    def empty(self) -> bool:
        return self._queue.empty()


class Timers:
    """When the loop's timed triggers are due (monotonic seconds; `NEVER`: not armed)."""

    def __init__(self, resync: float, now: float) -> None:
        self.poll = now
        self.resync = now + resync
        self.rollout = NEVER
        self.registry = NEVER

    def follow_registry(self, wanted: bool, period: float, now: float) -> None:
        """Arm the registry timer when the commit needs ticks (keeping a running one), disarm it when not."""
        if not wanted:
            self.registry = NEVER
        elif self.registry == NEVER:
            self.registry = now + period

    def wait(self, now: float, *others: float) -> float:
        """Seconds until the first timer (or any of `others`, e.g. a fight's end) is due."""
        return max(0.0, min(self.poll, self.resync, self.rollout, self.registry, *others) - now)

    def fired(self, now: float) -> Trigger:
        """The timer that ended a wait without a trigger."""
        return ("poll" if now >= self.poll else "rollout" if now >= self.rollout
                else "registry" if now >= self.registry else "resync")

    def polled(self, now: float, delay: float | None, interval: float) -> None:
        """After a fetch: the next poll after `delay` (a backoff) or the jittered `interval`."""
        self.poll = now + (delay if delay is not None else interval * random.uniform(0.9, 1.1))


def watch_directory(directory: Path, changed: Callable[[], None]) -> Any:
    """A started watchdog observer calling `changed()` on each change in the working copy
    (`--watch-dir`), its `.git` and mere reads aside. The caller stops and joins it."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler  # only `--watch-dir` needs watchdog
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):  # type: ignore[misc]
        def on_any_event(self, event: FileSystemEvent) -> None:
            path = str(getattr(event, "src_path", ""))
            if f"{os.sep}.git" in path or event.event_type in ("opened", "closed_no_write"):
                return
            changed()

    observer = Observer()
    observer.schedule(Handler(), str(directory), recursive=True)
    observer.daemon = True
    observer.start()
    return observer
