"""Kubernetes Events for applied, failed, skipped and pruned objects, posted off the apply path.

Events are a courtesy (the audit log is the record): a queue feeds background threads that
post each Event once, with a short timeout and no retries, and drop what is left when the API
server stops answering (the breaker is open) or when the apply is over and the drain deadline
has passed. So a dying API server costs the apply no time for its Events, and a healthy one
gets them all.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from agent.apply._engine import ObjectResult
from agent.cluster import FIELD_MANAGER, Cluster, ClusterError
from agent.errors import AgentError

_REASONS = {"applied": "Applied", "deleted": "Pruned", "failed": "ApplyFailed", "skipped": "ApplySkipped"}
_TIMEOUT = (2.0, 5.0)


def make_event(involved: dict[str, Any], reason: str, message: str, *, warning: bool,
               now: datetime | None = None) -> dict[str, Any]:
    """An Event of the agent about `involved` (apiVersion, kind, name[, namespace, uid]), posted
    in the object's namespace (cluster-scoped objects: "default") (pure)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved.get("namespace") or "default"},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1000],
        "type": "Warning" if warning else "Normal",
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def event_for(result: ObjectResult, now: datetime | None = None) -> dict[str, Any] | None:
    """The Event an object result deserves, or None (pure)."""
    c = result.change
    reason = _REASONS.get(result.outcome)
    if reason is None:
        return None
    uid = ((result.live or {}).get("metadata") or {}).get("uid") or result.uid
    message = {"Applied": f"{c.action}d by modelops-agent",
               "Pruned": "deleted by modelops-agent (no longer in Git)"}.get(reason, result.message)
    involved = {"apiVersion": c.api_version, "kind": c.kind, "name": c.name,
                **({"namespace": c.namespace} if c.namespace else {}), **({"uid": uid} if uid else {})}
    return make_event(involved, reason, message, warning=reason not in ("Applied", "Pruned"), now=now)


class EventPoster:
    """post() never blocks on the network; close() waits at most `drain` seconds."""

    def __init__(self, cluster: Cluster, drain: float = 30.0, workers: int = 2) -> None:
        self.cluster = cluster
        self.drain = drain
        self.posted = 0
        self.dropped = 0
        self._count = threading.Lock()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._deadline = float("inf")
        self._threads = [threading.Thread(target=self._run, name=f"event-poster-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def post(self, result: ObjectResult) -> None:
        event = event_for(result)
        if event is not None:
            self._queue.put(event)

    def _run(self) -> None:
        kind = self.cluster.kind("v1", "Event")
        while True:
            event = self._queue.get()
            if event is None:
                return
            posted = False
            if not self.cluster.breaker.is_open and time.monotonic() <= self._deadline:
                try:
                    self.cluster.request("POST", kind.collection_path(event["metadata"]["namespace"]), body=event,
                                         retries=0, timeout=_TIMEOUT)
                    posted = True
                except (ClusterError, AgentError):
                    pass
            with self._count:
                if posted:
                    self.posted += 1
                else:
                    self.dropped += 1

    def close(self) -> None:
        """Wait for the queue to drain, at most `drain` seconds; whatever is left is dropped."""
        self._deadline = time.monotonic() + self.drain
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=max(0.0, self._deadline - time.monotonic()) + sum(_TIMEOUT))
