"""The target's Lease: at most one writer per target at a time.

A CLI `agent apply` holds it for the duration of its writes, and the controller's leader
election (`agent run`) holds the very same Lease, so a manual apply and a running controller
never write the same target at once. The record follows client-go's leader election
(holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions): a holder
renews it every third of its duration, and a Lease not renewed within its duration is free.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.cluster._client import Cluster, ClusterError
from agent.cluster._kinds import well_known
from agent.errors import AgentError

_LEASE = well_known("coordination.k8s.io/v1", "Lease")
assert _LEASE is not None


class LeaseHeld(AgentError):
    """Another holder has the target's Lease and keeps renewing it."""

    def __init__(self, target: str, holder: str, renewed_ago: float, name: str) -> None:
        self.holder = holder
        super().__init__(
            f"target {target!r} is locked by {holder} (Lease {name}, renewed {renewed_ago:.0f} s ago): another "
            "apply or the controller is writing it; retry later or pass --lock-timeout SECONDS to wait")


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dead_here(holder: str) -> bool:
    """A holder `name@host/pid` on this very host whose process is gone (a killed apply) holds
    nothing: no need to wait out its Lease."""
    who, _, pid = holder.rpartition("/")
    host = who.rpartition("@")[2]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_name(target: str) -> str:
    return f"modelops-{target}"


class TargetLease:
    """Acquire, renew in the background, release. Use as a context manager."""

    def __init__(self, cluster: Cluster, target: str, namespace: str, identity: str, *,
                 duration: int = 30, wait: float = 0.0) -> None:
        self.cluster, self.target, self.namespace, self.identity = cluster, target, namespace, identity
        self.duration, self.wait = duration, wait
        self.name = lease_name(target)
        self._record: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str = ""  # why we no longer hold it (set by the renewer)

    # --- reading --------------------------------------------------------------------------
    def _get(self) -> dict[str, Any] | None:
        assert _LEASE is not None
        return self.cluster.get(_LEASE, self.name, self.namespace)

    def _free(self, lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or holder == self.identity or _dead_here(holder):
            return True
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        return renewed is None or renewed + timedelta(seconds=duration) < _now()

    # --- writing --------------------------------------------------------------------------
    def _body(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro(_now())
        spec = (previous or {}).get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0)
        if previous is not None and spec.get("holderIdentity") not in (None, "", self.identity):
            transitions += 1
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/part-of": "modelops-agent",
                                           "modelops.dev/lease": self.target}}
        if previous is not None:
            meta["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": {
            "holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
            "acquireTime": spec.get("acquireTime") if spec.get("holderIdentity") == self.identity else now,
            "renewTime": now, "leaseTransitions": transitions}}

    def acquire(self) -> None:
        assert _LEASE is not None
        deadline = time.monotonic() + self.wait
        while True:
            current = self._get()
            if current is None or self._free(current):
                body = self._body(current)
                try:
                    self._record = (self.cluster.create(_LEASE, body, self.namespace, make_namespace=True) if current is None
                                    else self.cluster.replace(_LEASE, body))
                except ClusterError as exc:
                    if exc.status != 409:  # someone else got there first: look again
                        raise
                else:
                    break
            elif time.monotonic() >= deadline:
                spec = current.get("spec") or {}
                renewed = _parse(spec.get("renewTime")) or _now()
                raise LeaseHeld(self.target, str(spec.get("holderIdentity")),
                                (_now() - renewed).total_seconds(), f"{self.namespace}/{self.name}")
            time.sleep(1.0)
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        assert _LEASE is not None
        while not self._stop.wait(self.duration / 3):
            try:
                self._record = self.cluster.replace(_LEASE, self._body(self._record))
            except (ClusterError, AgentError) as exc:
                current = None
                with contextlib.suppress(ClusterError, AgentError):
                    current = self._get()
                holder = ((current or {}).get("spec") or {}).get("holderIdentity")
                if current is not None and holder != self.identity:
                    self.lost = f"lost the Lease {self.namespace}/{self.name} to {holder}"
                    return
                if current is not None:
                    self._record = current
                if isinstance(exc, ClusterError) and exc.status == 0:
                    continue  # unreachable: the breaker ends the apply; keep trying to renew

    def check(self) -> None:
        """Raise when the Lease was lost: no further write may happen."""
        if self.lost:
            raise AgentError(self.lost)

    def release(self) -> None:
        assert _LEASE is not None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._record is None or self.lost or self.cluster.breaker.is_open:
            return
        body = self._body(self._record)
        body["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
        with contextlib.suppress(ClusterError, AgentError):  # else it expires on its own within its duration
            self.cluster.replace(_LEASE, body)
        self._record = None

    def __enter__(self) -> TargetLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
