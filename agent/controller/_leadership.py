"""Leadership (`agent run --leader-elect`): only the holder of the target's Lease writes.

`Leadership` runs one thread that acquires the target's Lease, keeps it while it can (the
Lease renews itself), and tries again every lease_duration / 5 while another holds it. It
exposes only two events that the loop thread reads: `leading` (we hold the Lease now) and
`changed` (we gained or lost it since the loop last looked). The election thread touches no
state of the loop: on a change the loop itself forgets what the previous leader may have
written (its inventory, its rollout states).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.cluster import Cluster, ClusterError, LeaseHeld, TargetLease
from agent.errors import AgentError

log = logging.getLogger("modelops.controller")


class Leadership:
    """`start(target)` once the target is known; `close()` joins the thread and releases the Lease.
    `on_leading(bool)` is told each change (the metric); `on_gained()` asks for a pass."""

    def __init__(self, cluster: Cluster, namespace: str, identity: str, *, duration: int, name: str | None,
                 stop: threading.Event, on_leading: Callable[[bool], None], on_gained: Callable[[], None]) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.name = name
        self.leading = threading.Event()
        self.changed = threading.Event()
        self._lease: TargetLease | None = None  # the election thread's alone (read by `lease`)
        self._stop = stop
        self._on_leading = on_leading
        self._on_gained = on_gained
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> TargetLease | None:
        """The Lease we hold (None: none), for writes that check it is still ours."""
        return self._lease

    def start(self, target: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._elect, args=(target,), name="leader-election", daemon=True)
            self._thread.start()

    def _elect(self, target: str) -> None:
        """Hold the target's Lease while we can; retry every duration / 5 while another does."""
        retry = max(1.0, self.duration / 5)
        while not self._stop.is_set():
            lease = self._lease
            if lease is not None and lease.lost:
                log.warning("%s: no longer the leader", lease.lost)
                self.leading.clear()
                self._on_leading(False)
                self._lease = None
                self.changed.set()
            if self._lease is None:
                candidate = TargetLease(self.cluster, target, self.namespace, self.identity, duration=self.duration)
                if self.name:
                    candidate.name = self.name
                try:
                    candidate.acquire()
                except LeaseHeld:
                    pass
                except (ClusterError, AgentError) as exc:
                    log.warning("leader election: %s", exc)
                else:
                    self._lease = candidate
                    self.changed.set()  # first: the loop that sees `leading` sees the change too
                    self.leading.set()
                    self._on_leading(True)
                    log.info("leader for target %s (Lease %s/%s)", target, self.namespace, candidate.name)
                    self._on_gained()
            self._stop.wait(retry)

    def is_leader(self) -> bool:
        """Loop thread: whether we lead now. True once after a change means the loop must forget
        what it read of the target (`changed` is then cleared by `take_change`)."""
        return self.leading.is_set()

    def take_change(self) -> bool:
        """Loop thread: whether leadership was gained or lost since the last call."""
        if not self.changed.is_set():
            return False
        self.changed.clear()
        return True

    def close(self) -> None:
        """After `stop` is set: join the thread, release the Lease."""
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        self.leading.clear()
