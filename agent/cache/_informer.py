"""One kind's LIST + WATCH loop (client-go's reflector, gitops-engine's per-kind watch).

LIST once (remember the list's resourceVersion), then WATCH from there; a watch the server
ends normally is resumed from the last resourceVersion seen (an event's or a bookmark's), with
no relist. Only `410 Gone` (the version is too old: an HTTP 410 or an ERROR event with code
410) costs a relist. A kind that is not served (404: its CRD is not installed) counts as
synced and empty and is listed again later with backoff. Any other failure reconnects after
a bounded, jittered backoff, so a broken server never makes a hot loop.

An informer covers a kind in every namespace (or a cluster-scoped kind), or a kind in one
namespace. `403 Forbidden`:
- on the LIST of a namespaced kind across all namespaces, with a fallback (the cache's): the
  fallback starts one informer per managed namespace and this one ends;
- on the LIST in one namespace: recorded as forbidden (`Shared.forbidden`, counted in
  `errors` and `forbidden`), and the informer counts as synced (with nothing, on a first list:
  a namespace we may not read must not hold up a sync), then lists again with backoff until
  it is allowed (what appears then are events);
- without a fallback (cluster-scoped kind, or no namespaces known): recorded as forbidden,
  not synced, retried with backoff like any other error;
- on a WATCH: the next attempt relists (which tells where we stand).

The list and watch functions are injected, so the loop is testable without a cluster.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.cache._store import ADDED, DELETED, MODIFIED, Change, KindKey, Store, resource_version
from agent.cluster import Cluster, ClusterError, KindInfo
from agent.render import ObjectKey
from agent.spec import group_of

log = logging.getLogger(__name__)


class Lister(Protocol):
    """(kind, label selector[, namespace]) -> (objects, the list's resourceVersion); ClusterError
    on failure. Without a namespace (the cache then passes only two arguments): every namespace."""

    def __call__(self, info: KindInfo, label_selector: str, namespace: str | None = None, /
                 ) -> tuple[list[dict[str, Any]], str]: ...


class Watcher(Protocol):
    """(kind, label selector, resourceVersion, server timeout s, stop[, namespace]) -> raw watch
    events. Without a namespace (the cache then passes only five arguments): every namespace."""

    def __call__(self, info: KindInfo, label_selector: str, resource_version: str, timeout_seconds: int,
                 stop: threading.Event, namespace: str | None = None, /) -> Iterator[dict[str, Any]]: ...


Callback = Callable[[str, ObjectKey, dict[str, Any]], None]
Forbidden = tuple[str, str, str]  # (group, kind, namespace); namespace "" = across all namespaces


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
    relists: int = 0  # lists after the first one of an informer (410, a kind served again)
    watches: int = 0  # watch requests started (first and resumed)
    events: int = 0  # ADDED/MODIFIED/DELETED applied from watches
    bookmarks: int = 0
    errors: int = 0  # failed lists/watches and ERROR events (each followed by a backoff)
    not_served: int = 0  # LISTs answered 404
    forbidden: int = 0  # LISTs and WATCHes answered 403 (the one that moves a kind to per-namespace included)


@dataclass
class Shared:
    """What every informer of one cache shares."""

    store: Store
    lister: Lister
    watcher: Watcher
    notify: Callable[[list[Change]], None]
    selector: str
    watch_timeout: int
    backoff: Backoff
    counters: Counters = field(default_factory=Counters)
    lock: threading.Lock = field(default_factory=threading.Lock)  # counters and forbidden
    forbidden: set[Forbidden] = field(default_factory=set)


class Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


class Switched(Exception):
    """The kind is now listed per namespace by other informers: this one ends."""


def list_kind(cluster: Cluster, info: KindInfo, label_selector: str, namespace: str | None = None,
              page: int = 500) -> tuple[list[dict[str, Any]], str]:
    """All objects of a kind (every namespace, or one `namespace`) and the resourceVersion to
    watch from: the first page's, which later pages share (a continued list is one consistent
    snapshot)."""
    query = {"labelSelector": label_selector, "limit": str(page)}
    items: list[dict[str, Any]] = []
    version = ""
    while True:
        data = cluster.request("GET", info.collection_path(namespace), query=query)
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
    """The thread that keeps one kind (in every namespace, or in one) current in the store.

    `fallback(informer)` is asked, from this thread, when a LIST across all namespaces answers
    403: True means it has handed the kind to per-namespace informers (this one then ends)."""

    def __init__(self, info: KindInfo, shared: Shared, namespace: str | None = None,
                 fallback: Callable[[Informer], bool] | None = None) -> None:
        self.info = info
        self.kind: KindKey = (group_of(info.api_version), info.kind)
        self.namespace = namespace
        self.shared = shared
        self.fallback = fallback
        self.stop = threading.Event()  # this informer's own: set by the cache (stop, or a namespace dropped)
        self.synced = threading.Event()  # the first list is in (or the kind is not served, or may not be read here)
        name = f"livecache-{info.kind}" + (f"-{namespace}" if namespace else "")
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._start_lock = threading.Lock()
        self._started = False
        self._listed = False
        self.version: str | None = None  # where the next watch starts; None: (re)list first

    @property
    def where(self) -> str:
        return self.info.kind + (f" in namespace {self.namespace}" if self.namespace else "")

    @property
    def scope(self) -> Forbidden:
        return (*self.kind, self.namespace or "")

    def _count(self, **increments: int) -> None:
        with self.shared.lock:
            for name, n in increments.items():
                setattr(self.shared.counters, name, getattr(self.shared.counters, name) + n)

    def _set_forbidden(self, forbidden: bool) -> None:
        with self.shared.lock:
            if forbidden:
                self.shared.forbidden.add(self.scope)
            else:
                self.shared.forbidden.discard(self.scope)

    def _run(self) -> None:
        failures = 0
        backoff = self.shared.backoff
        while not self.stop.is_set():
            try:
                if self.version is None:
                    self.version = self._list()
                    if self.version is None:  # not served: empty, look again later
                        failures += 1
                        self.stop.wait(backoff.delay(failures, backoff.not_served_cap))
                        continue
                started = time.monotonic()
                delivered = self._watch()
                if delivered or time.monotonic() - started >= min(1.0, self.shared.watch_timeout / 2):
                    failures = 0  # a normal end (server timeout): resume at once, no relist
                else:  # ended at once with nothing: never spin on an empty stream
                    failures += 1
                    self.stop.wait(backoff.delay(failures))
            except Switched:
                return
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
                    if isinstance(exc, ClusterError) and exc.status == 403 and self.version is not None:
                        self._count(forbidden=1)  # a watch refused: permissions changed, relist
                        self.version = None
                    self._count(errors=1)
                    log.warning("live cache: %s: %s (retry %d)", self.where, exc, failures)
                self.stop.wait(backoff.delay(failures))

    def _list(self) -> str | None:
        shared = self.shared
        try:
            if self.namespace is None:
                objects, version = shared.lister(self.info, shared.selector)
            else:
                objects, version = shared.lister(self.info, shared.selector, self.namespace)
        except ClusterError as exc:
            if exc.status == 403:
                self._refused()
                raise
            if exc.status != 404:
                raise
            self._count(not_served=1)
            # a deleted CRD takes its objects along
            self._publish(shared.store.replace(self.kind, [], self.namespace, guard=self.stop))
            self._listed = True  # empty is the baseline: objects that appear later are events
            self.synced.set()
            return None
        self._set_forbidden(False)
        changes = shared.store.replace(self.kind, objects, self.namespace, guard=self.stop)
        self._count(lists=1, relists=1 if self._listed else 0)
        self._publish(changes)
        self._listed = True
        self.synced.set()
        return version

    def _refused(self) -> None:
        """A 403 on the LIST: hand the kind over to per-namespace informers (raises Switched),
        or record it; a namespace we may not read counts as synced (with what it had)."""
        self._count(forbidden=1)
        if self.namespace is None and self.fallback is not None and self.fallback(self):
            self.synced.set()  # after the per-namespace informers are in place: a waiter looks again
            raise Switched
        self._set_forbidden(True)
        if self.namespace is not None and not self.synced.is_set():
            self._listed = True  # empty is the baseline: what we are allowed to see later is news
            self.synced.set()

    def _publish(self, changes: list[Change]) -> None:
        """A relist's differences are events too; the first list's content is not."""
        if self._listed and changes:
            self.shared.notify(changes)

    def _watch(self) -> bool:
        """One watch until it ends (or fails), moving `self.version` along as events come, so a
        broken watch resumes where it broke; whether anything came."""
        assert self.version is not None
        shared = self.shared
        self._count(watches=1)
        if self.namespace is None:
            events = shared.watcher(self.info, shared.selector, self.version, shared.watch_timeout, self.stop)
        else:
            events = shared.watcher(self.info, shared.selector, self.version, shared.watch_timeout, self.stop,
                                    self.namespace)
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
                key = self.shared.store.apply(kind, obj, guard=self.stop)
                if key is None:
                    break  # stopped meanwhile: nothing of ours may change any more
                self.version = resource_version(obj) or self.version
                self._count(events=1)
                self.shared.notify([(kind, key, obj)])
            elif kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(str(obj.get("message", "")))
                raise ClusterError(int(obj.get("code") or 0), str(obj.get("message", "watch error")),
                                   str(obj.get("reason", "")))
        return delivered

    def start(self) -> None:
        """Start the thread (once; a second call does nothing)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        self.thread.start()
