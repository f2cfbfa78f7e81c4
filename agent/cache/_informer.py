"""One kind's LIST + WATCH loop (client-go's reflector, gitops-engine's per-kind watch).

LIST once (remember the list's resourceVersion), then WATCH from there; a watch the server
ends normally is resumed from the last resourceVersion seen (an event's or a bookmark's), with
no relist. Only `410 Gone` (the version is too old: an HTTP 410 or an ERROR event with code
410) costs a relist. A kind that is not served (404: its CRD is not installed) counts as
synced and empty and is listed again later with backoff. Any other failure reconnects after
a bounded, jittered backoff, so a broken server never makes a hot loop.

The list and watch functions are injected, so the loop is testable without a cluster.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from agent.cache._store import ADDED, DELETED, MODIFIED, Change, Store, resource_version
from agent.cluster import Cluster, ClusterError, KindInfo
from agent.render import ObjectKey
from agent.spec import group_of

log = logging.getLogger(__name__)

Lister = Callable[[KindInfo, str], tuple[list[dict[str, Any]], str]]
"""(kind, label selector) -> (objects, the list's resourceVersion); ClusterError on failure."""
Watcher = Callable[[KindInfo, str, str, int, threading.Event], Iterator[dict[str, Any]]]
"""(kind, label selector, resourceVersion, server timeout s, stop) -> raw watch events."""
Callback = Callable[[str, ObjectKey, dict[str, Any]], None]


@dataclass
class Backoff:
    """Exponential, capped, jittered (each wait is drawn from [delay/2, delay])."""

    base: float = 0.5
    cap: float = 30.0
    not_served_cap: float = 60.0  # a kind whose CRD is missing is looked for again at most this often

    def delay(self, failures: int, cap: float | None = None) -> float:
        limit = self.cap if cap is None else cap
        full = min(limit, self.base * 2 ** max(0, failures - 1))
        return random.uniform(full / 2, full)


@dataclass
class Counters:
    lists: int = 0  # LIST requests that succeeded (first lists and relists)
    relists: int = 0  # lists after the first one of a kind (410, a kind served again)
    watches: int = 0  # watch requests started (first and resumed)
    events: int = 0  # ADDED/MODIFIED/DELETED applied from watches
    bookmarks: int = 0
    errors: int = 0  # failed lists/watches and ERROR events (each followed by a backoff)
    not_served: int = 0  # LISTs answered 404


class Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


def list_kind(cluster: Cluster, info: KindInfo, label_selector: str, page: int = 500) -> tuple[list[dict[str, Any]], str]:
    """All objects of a kind (every namespace) and the resourceVersion to watch from: the first
    page's, which later pages share (a continued list is one consistent snapshot)."""
    query = {"labelSelector": label_selector, "limit": str(page)}
    items: list[dict[str, Any]] = []
    version = ""
    while True:
        data = cluster.request("GET", info.collection_path(), query=query)
        meta = data.get("metadata") or {}
        version = version or str(meta.get("resourceVersion") or "")
        for item in data.get("items", []):
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
            items.append(item)
        token = meta.get("continue")
        if not token:
            return items, version
        query = {**query, "continue": token}


class Informer:
    """The thread that keeps one kind current in the store."""

    def __init__(self, info: KindInfo, label_selector: str, store: Store, *, lister: Lister, watcher: Watcher,
                 notify: Callable[[list[Change]], None], counters: Counters, counters_lock: threading.Lock,
                 stop: threading.Event, watch_timeout: int, backoff: Backoff) -> None:
        self.info = info
        self.kind = (group_of(info.api_version), info.kind)
        self.selector = label_selector
        self.store = store
        self.lister, self.watcher = lister, watcher
        self.notify = notify
        self.counters, self._counters_lock = counters, counters_lock
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.synced = threading.Event()  # the first list is in (or the kind is not served)
        self.thread = threading.Thread(target=self._run, name=f"livecache-{info.kind}", daemon=True)
        self._listed = False
        self.version: str | None = None  # where the next watch starts; None: (re)list first

    def _count(self, **increments: int) -> None:
        with self._counters_lock:
            for name, n in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + n)

    def _run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if self.version is None:
                    self.version = self._list()
                    if self.version is None:  # not served: empty, look again later
                        failures += 1
                        self.stop.wait(self.backoff.delay(failures, self.backoff.not_served_cap))
                        continue
                started = time.monotonic()
                delivered = self._watch()
                if delivered or time.monotonic() - started >= min(1.0, self.watch_timeout / 2):
                    failures = 0  # a normal end (server timeout): resume at once, no relist
                else:  # ended at once with nothing: never spin on an empty stream
                    failures += 1
                    self.stop.wait(self.backoff.delay(failures))
            except Exception as exc:
                if self.stop.is_set():
                    break
                failures += 1
                if isinstance(exc, Gone) or (isinstance(exc, ClusterError) and exc.status in (404, 410)):
                    # too old (relist), or the kind went away (the list will see a 404); the first
                    # time at once, a repeat after a backoff
                    self.version = None
                    if failures == 1:
                        continue
                else:
                    self._count(errors=1)
                    log.warning("live cache: %s: %s (retry %d)", self.info.kind, exc, failures)
                self.stop.wait(self.backoff.delay(failures))

    def _list(self) -> str | None:
        try:
            objects, version = self.lister(self.info, self.selector)
        except ClusterError as exc:
            if exc.status != 404:
                raise
            self._count(not_served=1)
            changes = self.store.replace(self.kind, [])  # a deleted CRD takes its objects along
            self._publish(changes)
            self._listed = True  # empty is the baseline: objects that appear later are events
            self.synced.set()
            return None
        changes = self.store.replace(self.kind, objects)
        self._count(lists=1, relists=1 if self._listed else 0)
        self._publish(changes)
        self._listed = True
        self.synced.set()
        return version

    def _publish(self, changes: list[Change]) -> None:
        """A relist's differences are events too; the first list's content is not."""
        if self._listed and changes:
            self.notify(changes)

    def _watch(self) -> bool:
        """One watch until it ends (or fails), moving `self.version` along as events come, so a
        broken watch resumes where it broke; whether anything came."""
        assert self.version is not None
        self._count(watches=1)
        events = self.watcher(self.info, self.selector, self.version, self.watch_timeout, self.stop)
        try:
            return self._consume(events)
        finally:
            if isinstance(events, Generator):
                events.close()  # at once, not when collected: it ends the request and its thread

    def _consume(self, events: Iterator[dict[str, Any]]) -> bool:
        delivered = False
        for event in events:
            if self.stop.is_set():
                break
            kind = str(event.get("type", ""))
            obj: dict[str, Any] = event.get("object") or {}
            delivered = True
            if kind == "BOOKMARK":
                self.version = resource_version(obj) or self.version
                self._count(bookmarks=1)
            elif kind in (ADDED, MODIFIED, DELETED):
                obj.setdefault("apiVersion", self.info.api_version)
                obj.setdefault("kind", self.info.kind)
                key = self.store.apply(kind, obj)
                self.version = resource_version(obj) or self.version
                self._count(events=1)
                self.notify([(kind, key, obj)])
            elif kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(str(obj.get("message", "")))
                raise ClusterError(int(obj.get("code") or 0), str(obj.get("message", "watch error")),
                                   str(obj.get("reason", "")))
        return delivered

    def start(self) -> None:
        self.thread.start()


def wait_all(events: list[threading.Event], timeout: float) -> bool:
    """True when every event is set within `timeout` seconds (one deadline for all)."""
    deadline = time.monotonic() + timeout
    return all(e.wait(max(0.0, deadline - time.monotonic())) for e in events)
