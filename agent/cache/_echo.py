"""The echo filter: watch events caused by our own writes are no news.

A controller that writes an object hears it back from the watch a moment later. `EchoFilter`
remembers each object as our last write returned it until the watch brings that copy (same
resourceVersion): that event is dropped, any other change to an object we manage calls
`on_change()`. Between the write and its echo, `view()` lays our copy over the cache's older
one, so a pass in between plans against what we wrote.

Threads: `wrote`/`deleted`/`view`/`follow` are called by the loop thread, `on_watch` by the
cache's watch threads (subscribe it to a LiveCache); the map of written objects is locked, the
managed keys are a frozenset swapped whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agent.render import ObjectKey, object_key


class EchoFilter:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._managed: frozenset[ObjectKey] = frozenset()

    def follow(self, keys: frozenset[ObjectKey]) -> None:
        """The objects we manage now (the desired ones and the inventory's)."""
        self._managed = keys

    def wrote(self, live: dict[str, Any]) -> None:
        """Our write returned `live` (before its watch echo, as a rule)."""
        with self._lock:
            self._written[object_key(live)] = live

    def deleted(self, key: ObjectKey) -> None:
        """We deleted the object `key` names."""
        with self._lock:
            self._written.pop(key, None)

    @property
    def pending(self) -> int:
        """How many of our writes the watch has not echoed yet."""
        with self._lock:
            return len(self._written)

    def on_watch(self, _event: str, key: ObjectKey, obj: dict[str, Any]) -> None:
        """A LiveCache subscriber: an object we manage changed. The echo of our own write (the
        resourceVersion our apply returned) is no news: it only tells that the cache has caught up."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        with self._lock:
            mine = self._written.get(key)
            if mine is not None and (mine.get("metadata") or {}).get("resourceVersion") == rv:
                del self._written[key]
                return
        if key in self._managed:
            self._on_change()

    def view(self, objects: dict[ObjectKey, dict[str, Any]]) -> dict[ObjectKey, dict[str, Any]]:
        """`objects` (the cache's, a copy: it is changed) with our own latest writes over copies
        the watch has not brought yet."""
        with self._lock:
            for key, mine in list(self._written.items()):
                theirs = objects.get(key)
                if theirs is not None and not older(theirs, mine):
                    del self._written[key]  # the cache caught up (or someone wrote after us)
                else:
                    objects[key] = mine
        return objects


def older(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether object copy `a` is older than `b` by resourceVersion. Kubernetes calls them
    opaque; every etcd-backed server hands out increasing integers, which is all this needs
    (anything else counts as not older, so the cache wins)."""
    ra = str((a.get("metadata") or {}).get("resourceVersion") or "")
    rb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    return ra.isdigit() and rb.isdigit() and int(ra) < int(rb)
