"""LiveCache: the live objects the agent manages, in memory, kept current by WATCH.

Like gitops-engine's pkg/cache: one LIST per kind fills it, one watch per kind keeps it
current, so a controller's resync (`objects()`) costs zero API requests and a change in the
cluster reaches subscribers as an event instead of waiting for the next poll.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from agent.cache._informer import Backoff, Callback, Counters, Informer, Lister, Watcher, list_kind, wait_all
from agent.cache._store import Change, Store
from agent.cluster import Cluster, KindInfo, watch
from agent.render import ObjectKey
from agent.spec import group_of

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT = 300  # seconds; the server ends each watch after this and it is resumed
STOP_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class CacheStats:
    """What the cache has cost and seen so far (a snapshot)."""

    lists: int
    relists: int
    watches: int
    events: int
    bookmarks: int
    errors: int
    not_served: int


class LiveCache:
    """Live objects of some kinds that match a label selector, kept current by watches.

    `start()` lists every kind concurrently (one thread per kind, which then watches);
    `wait_synced()` tells when every first list is in. Reads never touch the network.
    Subscribers are called from the watch threads, so they must be quick and thread-safe.

    `lister`/`watcher` replace the API calls (tests); without them `cluster` is required."""

    def __init__(self, cluster: Cluster | None, kinds: list[KindInfo], label_selector: str, *,
                 watch_timeout: int = DEFAULT_WATCH_TIMEOUT, lister: Lister | None = None,
                 watcher: Watcher | None = None, backoff: Backoff | None = None) -> None:
        if cluster is None and (lister is None or watcher is None):
            raise ValueError("LiveCache needs a cluster, or both a lister and a watcher")
        if cluster is not None:
            lister = lister or partial(list_kind, cluster)
            watcher = watcher or partial(watch, cluster)
        assert lister is not None and watcher is not None
        self._lister: Lister = lister
        self._watcher: Watcher = watcher
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self._store = Store()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # informers, subscribers, started
        self._counters = Counters()
        self._counters_lock = threading.Lock()
        self._informers: dict[tuple[str, str], Informer] = {}
        self._subscribers: list[Callback] = []
        self._started = False
        for info in kinds:
            self._add(info)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start one thread per kind: it LISTs (all kinds at once), then WATCHes. Returns at once."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("a stopped LiveCache cannot be started again")
            if self._started:
                return
            self._started = True
            informers = list(self._informers.values())
        for informer in informers:
            informer.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once every kind's first LIST is in (a kind that is not served counts, empty)."""
        with self._lock:
            events = [i.synced for i in self._informers.values()]
        return wait_all(events, timeout)

    def stop(self) -> None:
        """End every watch (their sockets are shut down, not waited out) and join the threads.
        A thread inside a LIST (a normal request: its own timeouts) may take longer than the
        join allows; it is then logged, and being a daemon it never holds up the process exit."""
        self._stop.set()
        with self._lock:
            informers = list(self._informers.values())
        for informer in informers:
            if informer.thread is threading.current_thread():
                continue  # stop() from a subscriber: this watch thread ends when the callback returns
            if informer.thread.is_alive():
                informer.thread.join(STOP_JOIN_TIMEOUT)
                if informer.thread.is_alive():
                    log.warning("live cache: the %s thread did not end within %.0f s",
                                informer.info.kind, STOP_JOIN_TIMEOUT)

    def __enter__(self) -> LiveCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_kind(self, info: KindInfo) -> None:
        """Watch one more kind (first seen in a new commit); started at once if the cache runs.
        A kind already watched (same group and kind, any version) is left as it is."""
        informer = self._add(info)
        if informer is not None:
            with self._lock:
                started = self._started and not self._stop.is_set()
            if started:
                informer.start()

    def _add(self, info: KindInfo) -> Informer | None:
        key = (group_of(info.api_version), info.kind)
        with self._lock:
            if key in self._informers:
                return None
            informer = Informer(info, self.label_selector, self._store, lister=self._lister, watcher=self._watcher,
                                notify=self._notify, counters=self._counters, counters_lock=self._counters_lock,
                                stop=self._stop, watch_timeout=self.watch_timeout, backoff=self.backoff)
            self._informers[key] = informer
            return informer

    # --- reads (no request) -----------------------------------------------------------------
    def objects(self) -> dict[ObjectKey, dict[str, Any]]:
        """A snapshot of every cached object. The dict is new; the objects are the cache's own
        (never copied, for speed): callers must not mutate them."""
        return self._store.snapshot()

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """One cached object (the cache's own: do not mutate), or None."""
        return self._store.get(key)

    @property
    def kinds(self) -> list[KindInfo]:
        with self._lock:
            return [i.info for i in self._informers.values()]

    @property
    def stats(self) -> CacheStats:
        with self._counters_lock:
            return CacheStats(**asdict(self._counters))

    # --- events -----------------------------------------------------------------------------
    def subscribe(self, callback: Callback) -> None:
        """callback(event_type, key, obj) for every ADDED/MODIFIED/DELETED after the first list
        (a relist's differences included), from the watch threads. An exception in a callback
        is logged and does not stop the watch."""
        with self._lock:
            self._subscribers.append(callback)

    def _notify(self, changes: list[Change]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for event_type, key, obj in changes:
            for callback in subscribers:
                try:
                    callback(event_type, key, obj)
                except Exception:
                    log.exception("live cache: subscriber %r failed on %s %s", callback, event_type, key)
