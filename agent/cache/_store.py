"""The objects themselves: one dict keyed by ObjectKey, changed only by whole-object swaps.

Last event wins: Kubernetes resourceVersions are opaque strings, so events are applied in the
order the watch delivers them (which is the server's order for one kind) and never compared.
An object is never mutated in place, only replaced, so a snapshot (a shallow copy of the
dict) stays consistent while the watch threads go on.

A kind is either listed across all namespaces (one scope: the kind) or, where that is not
allowed, per namespace (one scope per (kind, namespace)): a relist replaces exactly its scope.
A write may carry a `guard` (the informer's stop event): once that is set, the write is a
no-op, checked under the store's lock, so an informer that was stopped (and whose objects were
dropped) can never put them back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from agent.render import ObjectKey, object_key

KindKey = tuple[str, str]  # (group, kind): the first two fields of an ObjectKey
Change = tuple[str, ObjectKey, dict[str, Any]]  # (ADDED|MODIFIED|DELETED, key, object)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


def resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    """Thread-safe map of the live objects of every watched kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[ObjectKey, dict[str, Any]] = {}

    def apply(self, event_type: str, obj: dict[str, Any], guard: threading.Event | None = None) -> ObjectKey | None:
        """One watch event: ADDED/MODIFIED put the object, DELETED removes it. None (and
        nothing changed) when `guard` is set."""
        key = object_key(obj)
        with self._lock:
            if guard is not None and guard.is_set():
                return None
            if event_type == DELETED:
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
        return key

    def replace(self, kind: KindKey, objects: list[dict[str, Any]], namespace: str | None = None,
                guard: threading.Event | None = None) -> list[Change]:
        """A (re)list of one kind (all namespaces), or of one kind in one `namespace`: that scope's
        objects become exactly `objects`; other namespaces' objects of the kind are untouched.
        Returns what changed against the previous content (an object counts as modified when
        its resourceVersion differs: equality, never order, is all we ask of the opaque
        strings). Nothing changes (and [] is returned) when `guard` is set."""
        fresh = {object_key(o): o for o in objects}
        changes: list[Change] = []
        with self._lock:
            if guard is not None and guard.is_set():
                return []
            old = {k: v for k, v in self._objects.items()
                   if k[:2] == kind and (namespace is None or k[2] == namespace)}
            for key, obj in old.items():
                if key not in fresh:
                    del self._objects[key]
                    changes.append((DELETED, key, obj))
            for key, obj in fresh.items():
                before = old.get(key)
                if before is None:
                    changes.append((ADDED, key, obj))
                elif resource_version(before) != resource_version(obj):
                    changes.append((MODIFIED, key, obj))
                self._objects[key] = obj
        return changes

    def retain(self, kind: KindKey, namespaces: Iterable[str]) -> list[Change]:
        """Drop the objects of `kind` outside `namespaces` (no longer watched there); what was
        dropped, as DELETED changes."""
        keep = set(namespaces)
        with self._lock:
            gone = [(k, v) for k, v in self._objects.items() if k[:2] == kind and k[2] not in keep]
            for k, _ in gone:
                del self._objects[k]
        return [(DELETED, k, v) for k, v in gone]

    def snapshot(self) -> dict[ObjectKey, dict[str, Any]]:
        with self._lock:
            return dict(self._objects)

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)
