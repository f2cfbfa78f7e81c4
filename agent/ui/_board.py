"""The board: what the web UI shows, as the controller's loop threads last saw it.

After each pass a controller (or each fleet member's) publishes one `Published` entry per
(target, environment, cluster): references to what the pass already had (the desired state,
the watch cache's view, the inventory's annotations, the rollouts), so publishing costs the
loop nothing. The UI's threads read `entries()` and build each entry's status document
(`agent.engine.status_document`, the `agent status` shape) once per publication, cached.
`wait(generation, timeout)` lets a page's updates wait for the next publication."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.engine import Desired, status_document
from agent.render import ObjectKey
from agent.rollout import LiveRollouts

Key = tuple[str, str, str]  # (target, environment, cluster); "" where there is none


@dataclass(frozen=True)
class Published:
    """One target on one cluster after a pass. `live` and `annotations` are the pass's own
    (never mutated after publication); `drift`: model key -> the objects the pass found drifted
    and did not heal; `error`: why the last pass failed ("" when it did not)."""

    target: str
    desired: Desired
    live: Mapping[ObjectKey, dict[str, Any]]
    annotations: Mapping[str, str]
    rollouts: LiveRollouts
    at: float  # time.time() of the pass
    environment: str = ""
    cluster: str = ""
    drift: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str = ""
    prometheus: Any | None = None  # agent.metrics_source.Prometheus: the rollout analysis' (model charts)
    audit_log: Path | None = None

    @property
    def key(self) -> Key:
        return (self.target, self.environment, self.cluster)


class Board:
    """Thread-safe: the loop threads publish, the HTTP threads read."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: dict[Key, Published] = {}
        self._documents: dict[Key, tuple[Published, dict[str, Any]]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Counts publications: a page that saw generation g is current until it moves."""
        with self._cond:
            return self._generation

    def publish(self, entry: Published) -> None:
        with self._cond:
            self._entries[entry.key] = entry
            self._generation += 1
            self._cond.notify_all()

    def forget(self, key: Key) -> None:
        with self._cond:
            if self._entries.pop(key, None) is not None:
                self._documents.pop(key, None)
                self._generation += 1
                self._cond.notify_all()

    def forget_where(self, environment: str, cluster: str) -> None:
        """Drop every target of a fleet member that is gone."""
        with self._cond:
            gone = [k for k in self._entries if k[1] == environment and k[2] == cluster]
        for key in gone:
            self.forget(key)

    def wait(self, generation: int, timeout: float) -> int:
        """Block until the generation differs from `generation` or `timeout` passes; the
        generation then."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation, timeout)
            return self._generation

    def entries(self) -> list[Published]:
        """Every entry, ordered by environment (as published), cluster and target."""
        with self._cond:
            return sorted(self._entries.values(), key=lambda e: (e.environment, e.cluster, e.target))

    def document(self, entry: Published) -> dict[str, Any]:
        """`entry`'s status document (`agent status`'s shape), built once per publication."""
        with self._cond:
            cached = self._documents.get(entry.key)
        if cached is not None and cached[0] is entry:
            return cached[1]
        doc = status_document(entry.desired, entry.live, entry.annotations, entry.rollouts, entry.at)
        with self._cond:
            if self._entries.get(entry.key) is entry:
                self._documents[entry.key] = (entry, doc)
        return doc
