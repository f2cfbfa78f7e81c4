"""Issue #8: the LiveCache's store and LIST+WATCH loop, driven by a scripted fake API server.

Every wait is a poll for a behaviour (`eventually`), never a sleep whose length is asserted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from agent.cache import ADDED, DELETED, MODIFIED, Backoff, LiveCache
from agent.cache._store import Store
from agent.cluster import ClusterError, KindInfo, well_known
from agent.cluster._watch import _stream
from agent.render import ObjectKey

CONFIGMAPS = well_known("v1", "ConfigMap")
SECRETS = well_known("v1", "Secret")
assert CONFIGMAPS is not None and SECRETS is not None
END = object()  # ends the open watch normally (the server's timeoutSeconds ran out)
Event = tuple[str, ObjectKey, dict[str, Any]]


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def cm(name: str, rv: str, namespace: str = "ns", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv}, "data": data}


def key(name: str, namespace: str = "ns", kind: str = "ConfigMap") -> ObjectKey:
    return ("", kind, namespace, name)


def ev(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


class FakeServer:
    """LIST answers from `state` (or a scripted exception); each WATCH is a queue the test feeds
    (events, exceptions to raise, END); a watch with nothing queued stays open, like a quiet one.

    A scope is a kind ("ConfigMap": across all namespaces) or a kind in a namespace
    ("ConfigMap/ns-a": the LIST answers the state's objects in that namespace). A scope in
    `forbidden` answers every LIST with 403, as the API server does without the RBAC for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[str, tuple[list[dict[str, Any]], str]] = {}  # kind -> (objects, list rv)
        self.list_errors: dict[str, list[Exception]] = {}  # scope -> errors, one per LIST
        self.forbidden: set[str] = set()  # scopes
        self.list_calls: list[str] = []  # scopes
        self.watch_calls: list[tuple[str, str, int]] = []  # (scope, resourceVersion, timeout)
        self.streams: dict[str, queue.Queue[Any]] = {}

    @staticmethod
    def scope(info: KindInfo, namespace: str | None) -> str:
        return info.kind + (f"/{namespace}" if namespace else "")

    def lister(self, info: KindInfo, selector: str, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        scope = self.scope(info, namespace)
        with self.lock:
            self.list_calls.append(scope)
            if scope in self.forbidden:
                where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
                raise ClusterError(403, f'{info.plural} is forbidden: User "sa" cannot list resource '
                                        f'"{info.plural}" in API group "" {where}', "Forbidden")
            errors = self.list_errors.get(scope)
            if errors:
                raise errors.pop(0)
            objects, rv = self.state.get(info.kind, ([], "1"))
            return [dict(o) for o in objects if namespace is None or o["metadata"].get("namespace") == namespace], rv

    def watcher(self, info: KindInfo, selector: str, rv: str, timeout: int,
                stop: threading.Event, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        scope = self.scope(info, namespace)
        stream: queue.Queue[Any] = queue.Queue()
        with self.lock:
            self.watch_calls.append((scope, rv, timeout))
            self.streams[scope] = stream
        while not stop.is_set():
            try:
                item = stream.get(timeout=0.01)
            except queue.Empty:
                continue
            if item is END:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def watches(self, kind: str = "ConfigMap") -> list[str]:
        """The resourceVersions the watches of a scope started from."""
        with self.lock:
            return [rv for k, rv, _ in self.watch_calls if k == kind]

    def send(self, *items: Any, kind: str = "ConfigMap") -> None:
        with self.lock:
            stream = self.streams[kind]
        for item in items:
            stream.put(item)

    def lists(self, scope: str) -> int:
        with self.lock:
            return self.list_calls.count(scope)


class RecordingBackoff(Backoff):
    """Tiny real waits; remembers which failure count each wait was asked for."""

    def __init__(self) -> None:
        super().__init__(base=0.001, cap=0.004, not_served_cap=0.004)
        self.asked: list[int] = []

    def delay(self, failures: int, cap: float | None = None) -> float:
        self.asked.append(failures)
        return super().delay(failures, cap)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def make_cache(server: FakeServer) -> Iterator[Callable[..., LiveCache]]:
    caches: list[LiveCache] = []

    def make(kinds: list[KindInfo] | None = None, cluster: Any = None, **kwargs: Any) -> LiveCache:
        kwargs.setdefault("backoff", RecordingBackoff())
        cache = LiveCache(cluster, kinds or [CONFIGMAPS], "app=x", lister=server.lister, watcher=server.watcher,
                          **kwargs)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("livecache-")]


def recorder(cache: LiveCache) -> list[Event]:
    events: list[Event] = []
    cache.subscribe(lambda kind, k, obj: events.append((kind, k, obj)))
    return events


# --- the store -----------------------------------------------------------------------------

def test_store_applies_events_in_order_last_one_wins() -> None:
    store = Store()
    store.apply(ADDED, cm("a", "10", v="1"))
    store.apply(MODIFIED, cm("a", "9", v="2"))  # an "older looking" version: opaque, still applied
    assert store.get(key("a"))["data"] == {"v": "2"}  # type: ignore[index]
    store.apply(DELETED, cm("a", "11"))
    store.apply(DELETED, cm("never-there", "12"))  # a delete of something unknown is harmless
    assert store.snapshot() == {}


def test_store_replace_touches_only_its_kind_and_reports_the_difference() -> None:
    store = Store()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "1"}}
    store.apply(ADDED, secret)
    assert store.replace(("", "ConfigMap"), [cm("a", "1"), cm("b", "1")]) == [
        (ADDED, key("a"), cm("a", "1")), (ADDED, key("b"), cm("b", "1"))]
    changes = store.replace(("", "ConfigMap"), [cm("a", "1"), cm("c", "3")])
    assert sorted((k, n[3]) for k, n, _ in changes) == [(ADDED, "c"), (DELETED, "b")]
    changes = store.replace(("", "ConfigMap"), [cm("a", "5"), cm("c", "3")])
    assert [(k, n[3]) for k, n, _ in changes] == [(MODIFIED, "a")]
    assert set(store.snapshot()) == {key("a"), key("c"), key("s", kind="Secret")}


def test_a_snapshot_does_not_move_under_later_events() -> None:
    store = Store()
    store.apply(ADDED, cm("a", "1"))
    snapshot = store.snapshot()
    store.apply(ADDED, cm("b", "2"))
    store.apply(MODIFIED, cm("a", "3", v="new"))
    assert set(snapshot) == {key("a")} and snapshot[key("a")]["metadata"]["resourceVersion"] == "1"


# --- list, then watch ----------------------------------------------------------------------

def test_the_first_list_fills_the_cache_without_events_then_the_watch_feeds_it(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", v="1")], "7")
    cache = make_cache(watch_timeout=42)
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)
    assert set(cache.objects()) == {key("a")} and events == []
    eventually(lambda: server.watches() == ["7"], "a watch from the list's resourceVersion")
    assert server.watch_calls[0][2] == 42  # the server-side timeout is passed on

    server.send(ev(ADDED, cm("b", "8")), ev(MODIFIED, cm("a", "9", v="2")), ev(DELETED, cm("b", "10")))
    eventually(lambda: len(events) == 3, "three events")
    assert [(k, n) for k, n, _ in events] == [(ADDED, key("b")), (MODIFIED, key("a")), (DELETED, key("b"))]
    assert cache.get(key("a"))["data"] == {"v": "2"}  # type: ignore[index]
    assert set(cache.objects()) == {key("a")}
    stats = cache.stats
    assert (stats.lists, stats.relists, stats.watches, stats.events, stats.errors) == (1, 0, 1, 3, 0)


def test_a_watch_the_server_ends_resumes_from_the_last_version_without_a_relist(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    cache = make_cache()
    cache.start()
    eventually(lambda: server.watches() == ["1"], "the first watch")
    server.send(ev(ADDED, cm("a", "20")), END)
    eventually(lambda: server.watches() == ["1", "20"], "a resumed watch from the last event's version")
    server.send(END)  # a watch that ran its time with nothing to say resumes from the same version
    eventually(lambda: server.watches() == ["1", "20", "20"], "another resume")
    assert server.list_calls == ["ConfigMap"]
    assert cache.stats.relists == 0 and cache.stats.watches == 3


def test_bookmarks_move_the_resume_point_and_are_not_events(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5")], "5")
    cache = make_cache()
    events = recorder(cache)
    cache.start()
    eventually(lambda: server.watches() == ["5"], "the first watch")
    bookmark = {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
                                                 "metadata": {"resourceVersion": "77"}}}
    server.send(bookmark, END)
    eventually(lambda: server.watches() == ["5", "77"], "a resume from the bookmark's version")
    assert events == [] and set(cache.objects()) == {key("a")}
    assert cache.stats.bookmarks == 1 and cache.stats.events == 0


@pytest.mark.parametrize("gone", [
    ev("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
                 "message": "too old resource version: 1 (100)"}),
    ClusterError(410, "too old resource version", "Gone"),
], ids=["error-event", "http-410"])
def test_410_gone_relists_and_reports_what_changed_in_between(
        server: FakeServer, make_cache: Callable[..., LiveCache], gone: Any) -> None:
    server.state["ConfigMap"] = ([cm("a", "5"), cm("b", "5")], "5")
    cache = make_cache()
    events = recorder(cache)
    cache.start()
    eventually(lambda: server.watches() == ["5"], "the first watch")
    # while the watch was away: b deleted, a changed, c created
    server.state["ConfigMap"] = ([cm("a", "90", v="new"), cm("c", "95")], "100")
    server.send(gone)
    eventually(lambda: server.watches() == ["5", "100"], "a watch from the relist's version")
    assert server.list_calls == ["ConfigMap", "ConfigMap"]
    assert sorted((k, n[3]) for k, n, _ in events) == [(ADDED, "c"), (DELETED, "b"), (MODIFIED, "a")]
    assert set(cache.objects()) == {key("a"), key("c")}
    stats = cache.stats
    assert (stats.lists, stats.relists, stats.errors) == (2, 1, 0)


def test_other_watch_errors_reconnect_with_growing_backoff_from_the_same_version(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    backoff = RecordingBackoff()
    cache = make_cache(backoff=backoff)
    cache.start()
    eventually(lambda: server.watches() == ["1"], "the first watch")
    server.send(ev(ADDED, cm("a", "3")))
    eventually(lambda: cache.get(key("a")), "the event")
    for n in range(1, 4):
        server.send(ClusterError(0, "connection reset"))
        eventually(lambda n=n: len(server.watches()) == n + 1, "a reconnect")
    error_event = ev("ERROR", {"kind": "Status", "code": 500, "message": "internal error"})
    server.send(error_event)
    eventually(lambda: len(server.watches()) == 5, "a reconnect after an ERROR event")
    assert server.watches() == ["1", "3", "3", "3", "3"]  # no relist: the version is still good
    assert backoff.asked == [1, 2, 3, 4]  # one wait per failure, each longer (capped) than the last
    assert server.list_calls == ["ConfigMap"] and cache.stats.errors == 4


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    for failures in range(1, 40):
        full = min(30.0, 0.5 * 2 ** (failures - 1))
        delays = {backoff.delay(failures) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered: watches of many kinds do not reconnect in step


def test_a_watch_that_ends_at_once_with_nothing_backs_off_instead_of_spinning(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    backoff = RecordingBackoff()
    cache = make_cache(backoff=backoff, watch_timeout=300)
    cache.start()
    for n in range(1, 4):
        eventually(lambda n=n: len(server.watches()) == n, "a watch")
        server.send(END)
    eventually(lambda: backoff.asked[:3] == [1, 2, 3], "growing waits between empty watches")


def test_a_kind_that_is_not_served_is_synced_empty_and_listed_again_later(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.list_errors["ConfigMap"] = [ClusterError(404, "the server could not find the requested resource")] * 2
    cache = make_cache()
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)
    assert cache.stats.not_served >= 1
    server.state["ConfigMap"] = ([cm("a", "5")], "5")  # the CRD got installed
    eventually(lambda: cache.get(key("a")), "the object once the kind is served")
    assert [(k, n) for k, n, _ in events] == [(ADDED, key("a"))]  # new since the (empty) first look
    eventually(lambda: server.watches() == ["5"], "a watch once listed")
    assert cache.stats.not_served == 2


def test_a_failing_list_is_retried_and_the_cache_is_not_synced_meanwhile(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    release = threading.Event()

    def blocked_lister(info: KindInfo, selector: str) -> tuple[list[dict[str, Any]], str]:
        if not release.is_set():
            server.list_calls.append("failed")
            raise ClusterError(503, "unavailable")
        return server.lister(info, selector)

    backoff = RecordingBackoff()
    cache = LiveCache(None, [CONFIGMAPS], "app=x", lister=blocked_lister, watcher=server.watcher, backoff=backoff)
    try:
        cache.start()
        eventually(lambda: len(server.list_calls) >= 3, "list retries")
        assert not cache.wait_synced(0.05)
        release.set()
        assert cache.wait_synced(30)
        assert cache.stats.lists == 1 and cache.stats.errors >= 3
    finally:
        cache.stop()


def test_a_failing_subscriber_does_not_stop_the_watch(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    cache = make_cache()

    def broken(kind: str, k: ObjectKey, obj: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    cache.subscribe(broken)
    events = recorder(cache)
    cache.start()
    eventually(lambda: server.watches() == ["1"], "the first watch")
    server.send(ev(ADDED, cm("a", "2")), ev(ADDED, cm("b", "3")))
    eventually(lambda: len(events) == 2, "both events reach the other subscriber")
    assert len(server.watches()) == 1


def test_add_kind_lists_and_watches_the_new_kind_once(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "4"}}
    server.state["Secret"] = ([secret], "4")
    cache = make_cache()
    cache.start()
    assert cache.wait_synced(30)
    cache.add_kind(SECRETS)
    cache.add_kind(SECRETS)  # already watched: nothing more
    assert cache.wait_synced(30)
    assert cache.get(key("s", kind="Secret")) == secret
    eventually(lambda: server.watches("Secret") == ["4"], "the Secret watch")
    assert server.list_calls.count("Secret") == 1
    assert [i.kind for i in cache.kinds] == ["ConfigMap", "Secret"]


def test_stop_ends_every_thread_and_each_kind_lists_concurrently(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    both_listing = threading.Barrier(2, timeout=30)  # passes only if both LISTs run at once

    def concurrent_lister(info: KindInfo, selector: str) -> tuple[list[dict[str, Any]], str]:
        both_listing.wait()
        return server.lister(info, selector)

    cache = LiveCache(None, [CONFIGMAPS, SECRETS], "app=x", lister=concurrent_lister, watcher=server.watcher)
    cache.start()
    assert cache.wait_synced(30)
    eventually(lambda: len(server.watch_calls) == 2, "one watch per kind")
    cache.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("livecache-")]
    with pytest.raises(RuntimeError):
        cache.start()


def test_a_cache_needs_a_cluster_or_both_functions(server: FakeServer) -> None:
    with pytest.raises(ValueError):
        LiveCache(None, [CONFIGMAPS], "app=x", lister=server.lister)


# --- least privilege: per-namespace lists where a list across all namespaces is forbidden ---

NAMESPACES = well_known("v1", "Namespace")
assert NAMESPACES is not None


def test_store_replace_of_one_namespace_leaves_the_other_namespaces_alone() -> None:
    store = Store()
    store.replace(("", "ConfigMap"), [cm("a", "1", "ns-a")], namespace="ns-a")
    store.replace(("", "ConfigMap"), [cm("b", "1", "ns-b"), cm("c", "1", "ns-b")], namespace="ns-b")
    changes = store.replace(("", "ConfigMap"), [cm("b", "2", "ns-b")], namespace="ns-b")
    assert sorted((k, n[2], n[3]) for k, n, _ in changes) == [(DELETED, "ns-b", "c"), (MODIFIED, "ns-b", "b")]
    assert store.replace(("", "ConfigMap"), [], namespace="ns-c") == []
    assert set(store.snapshot()) == {key("a", "ns-a"), key("b", "ns-b")}
    dropped = store.retain(("", "ConfigMap"), {"ns-b"})
    assert [(k, n) for k, n, _ in dropped] == [(DELETED, key("a", "ns-a"))]
    assert set(store.snapshot()) == {key("b", "ns-b")}


def test_a_stopped_writer_cannot_put_objects_back() -> None:
    store, guard = Store(), threading.Event()
    guard.set()
    assert store.apply(ADDED, cm("a", "1"), guard=guard) is None
    assert store.replace(("", "ConfigMap"), [cm("a", "1")], guard=guard) == []
    assert store.snapshot() == {}


def test_a_403_across_all_namespaces_falls_back_to_a_list_and_watch_per_managed_namespace(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a"), cm("b", "6", "ns-b"), cm("other", "7", "elsewhere")], "9")
    server.forbidden.add("ConfigMap")
    asked: list[str] = []

    def managed(info: KindInfo) -> set[str]:
        asked.append(info.kind)
        return {"ns-a", "ns-b"}

    cache = make_cache(namespaces=managed)
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)
    # only the managed namespaces: the one list that failed, then one list per namespace
    assert set(cache.objects()) == {key("a", "ns-a"), key("b", "ns-b")} and events == []
    assert server.list_calls[0] == "ConfigMap" and sorted(server.list_calls[1:]) == ["ConfigMap/ns-a", "ConfigMap/ns-b"]
    assert asked == ["ConfigMap"]
    assert cache.per_namespace == {("", "ConfigMap"): frozenset({"ns-a", "ns-b"})}
    eventually(lambda: server.watches("ConfigMap/ns-a") == ["9"] and server.watches("ConfigMap/ns-b") == ["9"],
               "a watch per namespace from its list's resourceVersion")
    assert server.watches("ConfigMap") == []  # no watch across all namespaces

    server.send(ev(ADDED, cm("a2", "10", "ns-a")), kind="ConfigMap/ns-a")
    server.send(ev(MODIFIED, cm("b", "11", "ns-b", v="2")), kind="ConfigMap/ns-b")
    eventually(lambda: len(events) == 2, "the events of both namespaces")
    assert sorted((k, n) for k, n, _ in events) == [(ADDED, key("a2", "ns-a")), (MODIFIED, key("b", "ns-b"))]
    assert cache.get(key("b", "ns-b"))["data"] == {"v": "2"}  # type: ignore[index]
    stats = cache.stats
    # the switch is no error (the cache was built for it) and every namespace is readable
    assert (stats.lists, stats.forbidden, stats.errors, stats.events) == (2, 1, 0, 2)
    assert cache.forbidden == frozenset()


def test_a_relist_in_one_namespace_never_drops_another_namespace_s_objects(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a"), cm("b", "5", "ns-b")], "5")
    server.forbidden.add("ConfigMap")
    cache = make_cache(namespaces=lambda info: {"ns-a", "ns-b"})
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)
    eventually(lambda: server.watches("ConfigMap/ns-a") == ["5"], "the ns-a watch")
    # while ns-a's watch was away: a deleted, a2 created there (ns-b's content unchanged)
    server.state["ConfigMap"] = ([cm("a2", "20", "ns-a"), cm("b", "5", "ns-b")], "20")
    server.send(ClusterError(410, "too old resource version", "Gone"), kind="ConfigMap/ns-a")
    eventually(lambda: server.watches("ConfigMap/ns-a") == ["5", "20"], "a watch from the relist's version")
    assert server.lists("ConfigMap/ns-a") == 2 and server.lists("ConfigMap/ns-b") == 1
    assert sorted((k, n) for k, n, _ in events) == [(ADDED, key("a2", "ns-a")), (DELETED, key("a", "ns-a"))]
    assert set(cache.objects()) == {key("a2", "ns-a"), key("b", "ns-b")}
    assert cache.stats.relists == 1


def test_refresh_namespaces_starts_new_namespaces_and_stops_dropped_ones(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a"), cm("b", "5", "ns-b")], "5")
    server.forbidden.add("ConfigMap")
    wanted = {"ns-a"}
    cache = make_cache(namespaces=lambda info: set(wanted))
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)
    assert set(cache.objects()) == {key("a", "ns-a")}
    eventually(lambda: server.watches("ConfigMap/ns-a") == ["5"], "the ns-a watch")

    wanted.add("ns-b")  # a new commit manages ns-b too
    cache.refresh_namespaces()
    assert cache.wait_synced(30)  # waits for the new namespace's first list
    assert set(cache.objects()) == {key("a", "ns-a"), key("b", "ns-b")}
    eventually(lambda: server.watches("ConfigMap/ns-b") == ["5"], "the ns-b watch")
    cache.refresh_namespaces()  # nothing new: nothing listed again
    assert server.lists("ConfigMap/ns-a") == 1 and server.lists("ConfigMap/ns-b") == 1
    assert server.lists("ConfigMap") == 1  # never asked across all namespaces again

    wanted.discard("ns-a")  # and then no longer ns-a
    stream_a = server.streams["ConfigMap/ns-a"]
    cache.refresh_namespaces()
    assert set(cache.objects()) == {key("b", "ns-b")}  # at once
    assert cache.per_namespace == {("", "ConfigMap"): frozenset({"ns-b"})}
    eventually(lambda: not [t for t in threading.enumerate() if t.name == "livecache-ConfigMap-ns-a"],
               "the ns-a thread ended")
    stream_a.put(ev(ADDED, cm("late", "30", "ns-a")))  # nobody reads it any more
    server.send(ev(ADDED, cm("b2", "31", "ns-b")), kind="ConfigMap/ns-b")
    eventually(lambda: cache.get(key("b2", "ns-b")), "ns-b still watched")
    assert set(cache.objects()) == {key("b", "ns-b"), key("b2", "ns-b")}
    assert [(k, n) for k, n, _ in events] == [(ADDED, key("b2", "ns-b"))]  # dropping ns-a is no DELETED


def test_a_forbidden_namespace_does_not_block_the_sync_and_is_retried_until_allowed(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a"), cm("d", "5", "denied")], "5")
    server.forbidden |= {"ConfigMap", "ConfigMap/denied"}
    backoff = RecordingBackoff()
    cache = make_cache(namespaces=lambda info: {"ns-a", "denied"}, backoff=backoff)
    events = recorder(cache)
    cache.start()
    assert cache.wait_synced(30)  # the namespace we may not read counts as synced, empty
    assert set(cache.objects()) == {key("a", "ns-a")}
    assert cache.forbidden == frozenset({("", "ConfigMap", "denied")})
    eventually(lambda: server.lists("ConfigMap/denied") >= 3, "the forbidden namespace listed again")
    assert backoff.asked[:2] == [1, 2]  # with a growing backoff
    assert cache.stats.errors >= 2 and cache.stats.forbidden >= 3
    assert server.watches("ConfigMap/denied") == []

    server.forbidden.discard("ConfigMap/denied")  # a RoleBinding is added
    eventually(lambda: cache.get(key("d", "denied")), "the namespace's object once allowed")
    assert [(k, n) for k, n, _ in events] == [(ADDED, key("d", "denied"))]  # news since the empty start
    assert cache.forbidden == frozenset()
    eventually(lambda: server.watches("ConfigMap/denied") == ["5"], "a watch there")


def test_dropping_a_forbidden_namespace_clears_it(server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.forbidden |= {"ConfigMap", "ConfigMap/denied"}
    wanted = {"ns-a", "denied"}
    cache = make_cache(namespaces=lambda info: set(wanted))
    cache.start()
    assert cache.wait_synced(30)
    assert cache.forbidden == frozenset({("", "ConfigMap", "denied")})
    wanted.discard("denied")
    cache.refresh_namespaces()
    assert cache.forbidden == frozenset()


@pytest.mark.parametrize("case", ["no-namespaces", "cluster-scoped"])
def test_without_a_fallback_a_403_is_an_error_and_the_kind_does_not_sync(
        server: FakeServer, make_cache: Callable[..., LiveCache], case: str) -> None:
    info = CONFIGMAPS if case == "no-namespaces" else NAMESPACES
    server.forbidden.add(info.kind)
    kwargs: dict[str, Any] = {} if case == "no-namespaces" else {"namespaces": lambda i: {"ns-a"}}
    cache = make_cache([info], **kwargs)
    cache.start()
    eventually(lambda: server.lists(info.kind) >= 3, "the list retried")
    assert not cache.wait_synced(0.05)
    assert cache.forbidden == frozenset({("", info.kind, "")}) and cache.per_namespace == {}
    assert cache.stats.errors >= 2
    server.forbidden.clear()  # a ClusterRoleBinding is added
    assert cache.wait_synced(30)
    assert cache.forbidden == frozenset()


def test_a_watch_refused_later_relists_and_falls_back(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a"), cm("other", "5", "elsewhere")], "5")
    cache = make_cache(namespaces=lambda info: {"ns-a"})
    cache.start()
    assert cache.wait_synced(30)
    assert set(cache.objects()) == {key("a", "ns-a"), key("other", "elsewhere")}
    eventually(lambda: server.watches() == ["5"], "the watch across all namespaces")
    server.forbidden.add("ConfigMap")  # the ClusterRoleBinding is removed
    server.send(ClusterError(403, "configmaps is forbidden", "Forbidden"))
    eventually(lambda: server.watches("ConfigMap/ns-a") == ["5"], "a watch in the managed namespace")
    assert set(cache.objects()) == {key("a", "ns-a")}  # nothing from namespaces it no longer reads
    assert cache.per_namespace == {("", "ConfigMap"): frozenset({"ns-a"})}


def test_a_failing_namespaces_callback_is_asked_again_on_the_next_403(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a")], "5")
    server.forbidden.add("ConfigMap")
    calls: list[int] = []

    def flaky(info: KindInfo) -> set[str]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("desired state not loaded yet")
        return {"ns-a"}

    cache = make_cache(namespaces=flaky)
    cache.start()
    assert cache.wait_synced(30)  # not synced empty on the failure: synced once ns-a is listed
    assert set(cache.objects()) == {key("a", "ns-a")}
    assert server.lists("ConfigMap") == 2 and len(calls) == 2
    assert cache.forbidden == frozenset() and cache.stats.errors == 1


def test_a_kind_the_cluster_already_lists_per_namespace_is_never_listed_across_all(
        server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    server.state["ConfigMap"] = ([cm("a", "5", "ns-a")], "5")
    server.state["Secret"] = ([], "5")
    server.forbidden |= {"ConfigMap", "Secret"}
    cluster = SimpleNamespace(namespace_scoped={("v1", "ConfigMap")})  # what observe() found out
    cache = make_cache([CONFIGMAPS, SECRETS], cluster=cluster, namespaces=lambda info: {"ns-a"})
    cache.start()
    assert cache.wait_synced(30)
    assert set(cache.objects()) == {key("a", "ns-a")}
    assert server.lists("ConfigMap") == 0 and server.lists("ConfigMap/ns-a") == 1
    # a kind found out by the cache is remembered for the Cluster's other readers
    assert server.lists("Secret") == 1 and server.lists("Secret/ns-a") == 1
    assert cluster.namespace_scoped == {("v1", "ConfigMap"), ("v1", "Secret")}


# --- the watch stream (agent.cluster.watch's reader) ---------------------------------------

class FakeResponse:
    """A urllib3 response stand-in: chunks split anywhere; read1 blocks when they run out until
    shutdown() (as a socket shut down from another thread would)."""

    def __init__(self, chunks: list[bytes], end: bool = True) -> None:
        self.chunks = list(chunks)
        self.end = end
        self.shut = threading.Event()
        self.closed = self.released = False

    def read1(self, amt: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if not self.end:
            self.shut.wait(30)
        return b""

    def shutdown(self) -> None:
        self.shut.set()

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


def test_the_stream_is_split_into_events_whatever_the_chunking() -> None:
    body = b'{"type":"ADDED","object":{"a":1}}\n\n{"type":"BOOKMARK","object":{"b":2}}\n{"type":"DELETED","object":{}}\n'
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]
    response = FakeResponse(chunks)
    events = list(_stream(response, threading.Event(), CONFIGMAPS))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "DELETED"]
    assert response.released and not response.closed  # read to the end: the connection is reusable


def test_a_stream_blocked_in_read_ends_when_stop_is_set_from_another_thread() -> None:
    response = FakeResponse([b'{"type":"ADDED","object":{}}\n'], end=False)
    stop = threading.Event()
    seen: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: seen.extend(_stream(response, stop, CONFIGMAPS)), name="test-stream")
    thread.start()
    eventually(lambda: seen, "the first event")
    stop.set()
    thread.join(30)
    assert not thread.is_alive() and response.shut.is_set()
    assert response.closed and not response.released  # a stopped stream's connection is dropped
    assert not [t for t in threading.enumerate() if t.name.startswith("watch-closer-")]


def test_a_subscriber_may_stop_the_cache(server: FakeServer, make_cache: Callable[..., LiveCache]) -> None:
    cache = make_cache()
    cache.subscribe(lambda kind, k, obj: cache.stop())
    cache.start()
    eventually(lambda: server.watches() == ["1"], "the first watch")
    server.send(ev(ADDED, cm("a", "2")))
    eventually(lambda: not [t for t in threading.enumerate() if t.name.startswith("livecache-")], "no thread")
