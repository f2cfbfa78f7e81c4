"""A fleet's promotions between environments by policy, on a thread of their own: the
evidence's Prometheus queries, the clone, push and pull request have their own timeouts, and
the fleet's thread (which hands commits to the clusters) is never held by them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from agent.controller._env_promotion import EnvironmentPromotions
from agent.desired import Desired

log = logging.getLogger("modelops.fleet")


class PromotionTicker:
    """Every `period` seconds until `stop` is set: `promotions.tick` over the whole repo's
    desired state in force, for the environments `drives()` names (the ones this agent promotes
    into: an environment is promoted into by the agent that drives its first cluster, so two
    agents of a pull-model fleet do not both propose)."""

    def __init__(self, promotions: EnvironmentPromotions, desired: Callable[[], Desired | None],
                 drives: Callable[[], Collection[str]], period: float, stop: threading.Event) -> None:
        self.promotions = promotions
        self._desired = desired
        self._drives = drives
        self.period = period
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="environment-promotions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            desired = self._desired()
            if desired is None or not any(e.promotion != "manual" for e in desired.spec.environments):
                continue
            try:
                self.promotions.tick(desired, where=self._drives())
            except Exception:  # one bad tick must not end promotions; the next one tries again
                log.exception("environment promotions: the tick failed")
