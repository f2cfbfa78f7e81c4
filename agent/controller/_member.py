"""A fleet member: one cluster of one environment, driven by its own Controller (its own
Cluster, watch cache, inventory, Lease, rollout driver and Metrics) on its own thread, fed by
the fleet through a FeedSource. The fleet's thread only offers, requests and reads the
`progress` snapshot the member's loop thread publishes after each pass: it never waits on the
member's API server.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from agent import health
from agent.cluster import Cluster
from agent.controller._clusters import Connection
from agent.controller._config import RunConfig
from agent.controller._feed import FeedSource
from agent.controller._loop import Controller
from agent.controller._metrics import Metrics
from agent.controller._rollout_setup import model_event, rollout_where
from agent.controller._triggers import Trigger
from agent.controller._waves import Progress
from agent.engine import Desired
from agent.errors import AgentError
from agent.notify import Sink
from agent.render import object_key
from agent.spec import Model
from agent.ui import Board

log = logging.getLogger("modelops.fleet")

RETRY_CONNECT = 5.0  # seconds between tries to load a member's credentials


class Member:
    """`on_pass()` is called (from the member's thread) after each of its passes."""

    def __init__(self, environment: str, name: str, connection: Connection, config: RunConfig,
                 on_pass: Callable[[], None], *, board: Board | None = None, notify: Sink | None = None) -> None:
        """`board`, `notify`: the fleet's, shared by its members."""
        self.board = board
        self.notify = notify
        self.environment = environment
        self.name = name
        self.connection = connection
        self.config = dataclasses.replace(
            config, kubeconfig=connection.kubeconfig, context=connection.context, http_addr=None,
            registry_interval=0.0, registry_sync_alias=None,
            lease_name=f"{config.lease_name}-{name}" if config.lease_name else None)
        self.source = FeedSource()
        self.controller: Controller | None = None
        self.progress = Progress()
        self.error = ""  # why the member has no controller (its credentials did not load)
        self._on_pass = on_pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{environment}-{name}", daemon=True)

    @property
    def labels(self) -> dict[str, str]:
        return {"cluster": self.name, "environment": self.environment}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.controller is not None:
            self.controller.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("member %s/%s did not stop within %.0f s", self.environment, self.name, timeout)

    def offer(self, desired: Desired, commit: str, token: str, trigger: Trigger = "webhook") -> None:
        """Fleet thread: the member takes `desired` at its next pass (requested now)."""
        self.source.offer(desired, commit, token)
        self.request(trigger)

    def request(self, trigger: Trigger) -> None:
        controller = self.controller
        if controller is not None:
            controller.request(trigger)

    # --- what the fleet reads (any thread) ------------------------------------------------------
    @property
    def unreachable(self) -> str:
        controller = self.controller
        if controller is None:
            return self.error or "not started"
        return controller.status.unreachable or controller.cluster.breaker.down

    @property
    def metrics(self) -> Metrics | None:
        controller = self.controller
        return controller.metrics if controller is not None else None

    @property
    def ready(self) -> bool:
        controller = self.controller
        return controller is not None and controller.status.ready

    # --- the member's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cluster = Cluster.connect(self.config.kubeconfig, self.config.context, timeouts=self.config.timeouts)
            except AgentError as exc:
                self.error = str(exc)
                log.error("cluster %s (%s): %s; trying again in %.0f s", self.name, self.environment, exc,
                          RETRY_CONNECT)
                self._stop.wait(RETRY_CONNECT)
                continue
            self.error = ""
            try:
                controller = Controller(self.config, cluster, source=self.source, labels=self.labels,
                                        on_pass=self._passed, board=self.board, notify=self.notify)
            except AgentError as exc:
                cluster.close()
                self.error = str(exc)
                log.error("cluster %s (%s): %s", self.name, self.environment, exc)
                self._stop.wait(RETRY_CONNECT)
                continue
            self.controller = controller
            if self._stop.is_set():
                controller.stop()
            try:
                controller.run()
            except Exception:  # a member's crash must not end the fleet: it is reported and restarted
                log.exception("cluster %s (%s): the controller stopped", self.name, self.environment)
                self.error = "the controller stopped on an error; restarting"
                self._stop.wait(RETRY_CONNECT)
            finally:
                cluster.close()
            if not self._stop.is_set():
                self.controller = None

    def _passed(self) -> None:
        """Member thread, after each pass: publish what the fleet's waves read."""
        controller = self.controller
        if controller is None:
            return
        applied = controller.applied
        token = self.source.token if applied is not None and applied is self.source.desired else ""
        phases = {key: state.phase for key, state in controller.rollouts.states.items()}
        self.progress = Progress(applied=token, phases=phases, healthy=bool(token) and _healthy(controller, applied))
        self._on_pass()


def _healthy(controller: Controller, desired: Desired | None) -> bool:
    """Whether every object of `desired` is Healthy in the member's watch cache (no request)."""
    cache = controller.live.cache
    if desired is None or cache is None:
        return False
    live = cache.objects()
    return health.worst(health.of(live.get(object_key(o))) for o in desired.objects).state == "Healthy"


def post_event(member: Member, model: Model, reason: str, message: str) -> None:
    """A Warning Event on `model` in the member's cluster, posted from a thread of its own (the
    fleet's thread never waits on a member's API server; the post has the client's timeouts)."""
    controller = member.controller
    if controller is None:
        return
    cluster = controller.cluster
    threading.Thread(target=model_event, args=(cluster, model, reason, message, True, rollout_where(member.labels)),
                     name=f"event-{member.name}", daemon=True).start()
