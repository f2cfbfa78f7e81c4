"""LiveCache: the live objects the agent manages, in memory, kept current by WATCH.

Like gitops-engine's pkg/cache: one LIST per kind fills it, one watch per kind keeps it
current, so a controller's resync (`objects()`) costs zero API requests and a change in the
cluster reaches subscribers as an event instead of waiting for the next poll.

Least privilege: an identity bound per namespace (RoleBindings, no ClusterRoleBinding) may not
LIST or WATCH a namespaced kind across all namespaces (403). Given `namespaces`, the cache then
lists and watches that kind once per namespace it manages (`namespaces(info)`), and
`refresh_namespaces()` follows a new commit's namespaces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from agent.cache._informer import Backoff, Callback, Forbidden, Informer, Lister, Shared, Watcher, list_kind
from agent.cache._store import Change, KindKey, Store
from agent.cluster import Cluster, KindInfo, watch
from agent.render import ObjectKey
from agent.spec import group_of

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT = 300  # seconds; the server ends each watch after this and it is resumed
STOP_JOIN_TIMEOUT = 5.0

Namespaces = Callable[[KindInfo], set[str]]
"""The namespaces a namespaced kind is managed in (those of its desired objects and of its
inventory entries): where it is listed and watched when it may not be across all namespaces."""


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
    forbidden: int


@dataclass
class _Kind:
    info: KindInfo
    per_namespace: bool = False  # listed per namespace (a LIST across all namespaces was refused)
    informers: dict[str | None, Informer] = field(default_factory=dict)  # None: across all namespaces


class LiveCache:
    """Live objects of some kinds that match a label selector, kept current by watches.

    `start()` lists every kind concurrently (one thread per kind, which then watches);
    `wait_synced()` tells when every first list is in. Reads never touch the network.
    Subscribers are called from the watch threads, so they must be quick and thread-safe.

    `namespaces(info)`: where a namespaced kind is managed. When a kind's LIST across all
    namespaces answers 403, the kind is listed and watched in each of those namespaces instead
    (one thread each), and `refresh_namespaces()` adds and drops namespaces later. Without it a
    403 is an error like any other (retried with backoff; the kind never syncs). With a Cluster
    the switch is remembered in `cluster.namespace_scoped` (shared with `observe`), and a kind
    already in it is listed per namespace from the start, without asking again. `namespaces`
    is called from the cache's threads and from `refresh_namespaces()`, one call at a time: it
    must be quick and must not call the cache.

    `lister`/`watcher` replace the API calls (tests); without them `cluster` is required."""

    def __init__(self, cluster: Cluster | None, kinds: list[KindInfo], label_selector: str, *,
                 watch_timeout: int = DEFAULT_WATCH_TIMEOUT, lister: Lister | None = None,
                 watcher: Watcher | None = None, backoff: Backoff | None = None,
                 namespaces: Namespaces | None = None) -> None:
        if cluster is None and (lister is None or watcher is None):
            raise ValueError("LiveCache needs a cluster, or both a lister and a watcher")
        if cluster is not None:
            lister = lister or partial(list_kind, cluster)
            watcher = watcher or partial(watch, cluster)
        assert lister is not None and watcher is not None
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self._cluster = cluster
        self._namespaces = namespaces
        self._store = Store()
        self._shared = Shared(store=self._store, lister=lister, watcher=watcher, notify=self._notify,
                              selector=label_selector, watch_timeout=watch_timeout, backoff=self.backoff)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # kinds and their informers, retired, subscribers, started
        self._refresh_lock = threading.Lock()  # one namespaces() round at a time (taken before _lock)
        self._kinds: dict[KindKey, _Kind] = {}
        self._retired: list[Informer] = []  # stopped or handed over: joined by stop()
        self._subscribers: list[Callback] = []
        self._started = False
        for info in kinds:
            self._add(info)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start one thread per kind (per kind and namespace for a kind listed per namespace):
        it LISTs (all at once), then WATCHes. Returns at once."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("a stopped LiveCache cannot be started again")
            if self._started:
                return
            self._started = True
            informers = self._active()
        for informer in informers:
            informer.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once every informer's first LIST is in. A kind that is not served counts (empty),
        so does a namespace whose LIST answered 403 (empty on a first list; see `forbidden`). A
        kind handed over to per-namespace informers is waited for through those."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [i.synced for i in self._active() if not i.synced.is_set()]
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending[0].wait(remaining)  # then look again: informers may have come and gone

    def stop(self) -> None:
        """End every watch (their sockets are shut down, not waited out) and join the threads.
        A thread inside a LIST (a normal request: its own timeouts) may take longer than the
        join allows; it is then logged, and being a daemon it never holds up the process exit."""
        with self._lock:
            self._stop.set()
            informers = self._active() + self._retired
        for informer in informers:
            informer.stop.set()
        for informer in informers:
            if informer.thread is threading.current_thread():
                continue  # stop() from a subscriber: this watch thread ends when the callback returns
            if informer.thread.is_alive():
                informer.thread.join(STOP_JOIN_TIMEOUT)
                if informer.thread.is_alive():
                    log.warning("live cache: the %s thread did not end within %.0f s",
                                informer.where, STOP_JOIN_TIMEOUT)

    def __enter__(self) -> LiveCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_kind(self, info: KindInfo) -> None:
        """Watch one more kind (first seen in a new commit); started at once if the cache runs.
        A kind already watched (same group and kind, any version) is left as it is."""
        self._start_new(self._add(info))

    def refresh_namespaces(self) -> None:
        """Ask `namespaces(info)` again for every kind listed per namespace (after a new commit
        is loaded): a namespace newly managed gets its informer (started at once if the cache
        runs; `wait_synced` then waits for its first list too), one no longer managed is stopped
        and its objects leave `objects()` at once (no DELETED event: they were not deleted).
        Kinds listed across all namespaces need nothing. Without `namespaces`, nothing."""
        if self._namespaces is None:
            return
        new: list[Informer] = []
        with self._refresh_lock:
            with self._lock:
                kinds = [k for k in self._kinds.values() if k.per_namespace]
            wanted = [(kind, self._wanted(kind.info)) for kind in kinds]
            with self._lock:
                if self._stop.is_set():
                    return
                for kind, namespaces in wanted:
                    if namespaces is not None:  # None: the callback failed; keep what runs
                        new += self._set_namespaces(kind, namespaces)
        self._start_new(new)

    # --- informers (callers hold the locks said) ---------------------------------------------
    def _active(self) -> list[Informer]:  # _lock
        return [i for kind in self._kinds.values() for i in kind.informers.values()]

    def _informer(self, info: KindInfo, namespace: str | None) -> Informer:
        fallback = self._fall_back if namespace is None and info.namespaced and self._namespaces is not None else None
        return Informer(info, self._shared, namespace, fallback)

    def _wanted(self, info: KindInfo) -> set[str] | None:  # _refresh_lock
        assert self._namespaces is not None
        try:
            return {ns for ns in self._namespaces(info) if ns}
        except Exception:
            log.exception("live cache: the namespaces of %s could not be computed", info.kind)
            return None

    def _set_namespaces(self, kind: _Kind, namespaces: set[str]) -> list[Informer]:  # _refresh_lock, _lock
        """Informers for exactly `namespaces`; the new ones (not started) are returned."""
        key = (group_of(kind.info.api_version), kind.info.kind)
        current = {ns for ns in kind.informers if ns is not None}
        new = []
        for ns in sorted(namespaces - current):
            informer = self._informer(kind.info, ns)
            kind.informers[ns] = informer
            new.append(informer)
        dropped = current - namespaces
        self._retired = [i for i in self._retired if i.thread.is_alive()]  # a long run drops many: keep the live ones
        for ns in sorted(dropped):
            informer = kind.informers.pop(ns)
            informer.stop.set()  # before the objects are dropped: its later writes are no-ops
            informer.synced.set()  # nobody waits for it any more
            self._retired.append(informer)
        if dropped:
            with self._shared.lock:
                self._shared.forbidden -= {(*key, ns) for ns in dropped}
            self._store.retain(key, namespaces)
        return new

    def _start_new(self, informers: list[Informer]) -> None:
        with self._lock:
            started = self._started and not self._stop.is_set()
        if started:
            for informer in informers:
                informer.start()

    def _known_per_namespace(self, info: KindInfo) -> bool:
        return (self._namespaces is not None and info.namespaced and self._cluster is not None
                and (info.api_version, info.kind) in self._cluster.namespace_scoped)

    def _add(self, info: KindInfo) -> list[Informer]:
        key = (group_of(info.api_version), info.kind)
        per_namespace = self._known_per_namespace(info)
        with self._refresh_lock:
            with self._lock:
                if key in self._kinds:
                    return []
            namespaces = self._wanted(info) if per_namespace else None
            with self._lock:
                if key in self._kinds:
                    return []
                kind = _Kind(info, per_namespace=namespaces is not None)
                self._kinds[key] = kind
                if namespaces is not None:
                    return self._set_namespaces(kind, namespaces)
                # across all namespaces (or, when the callback failed, the 403 then asks it again)
                informer = self._informer(info, None)
                kind.informers[None] = informer
                return [informer]

    def _fall_back(self, informer: Informer) -> bool:
        """From an informer across all namespaces whose LIST answered 403: hand its kind over
        to one informer per managed namespace. False when the cache is stopping or `namespaces`
        failed (the informer then retries with backoff, and asks again on its next 403)."""
        info = informer.info
        with self._refresh_lock:
            namespaces = self._wanted(info)
            with self._lock:
                kind = self._kinds.get(informer.kind)
                if (self._stop.is_set() or namespaces is None or kind is None
                        or kind.informers.get(None) is not informer):
                    return False
                kind.per_namespace = True
                del kind.informers[None]
                self._retired.append(informer)
                new = self._set_namespaces(kind, namespaces)
                self._store.retain(informer.kind, namespaces)  # from an earlier list across all namespaces
            with self._shared.lock:
                self._shared.forbidden.discard(informer.scope)  # an earlier 403 that could not switch yet
        if self._cluster is not None:
            self._cluster.namespace_scoped.add((info.api_version, info.kind))
        log.info("live cache: %s may not be listed across all namespaces (403): listing and watching it in "
                 "%d namespace(s): %s", info.kind, len(namespaces), ", ".join(sorted(namespaces)) or "none yet")
        self._start_new(new)
        return True

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
            return [kind.info for kind in self._kinds.values()]

    @property
    def per_namespace(self) -> dict[KindKey, frozenset[str]]:
        """The kinds listed per namespace, (group, kind) -> the namespaces they are watched in."""
        with self._lock:
            return {key: frozenset(ns for ns in kind.informers if ns is not None)
                    for key, kind in self._kinds.items() if kind.per_namespace}

    @property
    def forbidden(self) -> frozenset[Forbidden]:
        """(group, kind, namespace) whose last LIST answered 403 and that are not being read: a
        managed namespace the identity may not list the kind in (it counts as synced, with
        nothing in it on a first list, and is listed again with backoff), or namespace "" for a
        kind that may not be listed across all namespaces and has no per-namespace fallback
        (cluster-scoped, or no `namespaces` given: it does not sync)."""
        with self._shared.lock:
            return frozenset(self._shared.forbidden)

    @property
    def stats(self) -> CacheStats:
        with self._shared.lock:
            return CacheStats(**asdict(self._shared.counters))

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
