"""Where a controller's desired state comes from: the `DesiredSource` protocol, and `FeedSource`,
the source of a fleet member (a Fleet's one follower fetches and loads each commit, then hands
each member the Desired of its environment; the member never fetches).

The loop thread of a Controller calls `fetch()` (on a poll, a webhook, the start) and reads
`desired`, `commit`, `fetched`, `invalid`; `registry_tick()` on a registry tick. `FeedSource.offer`
is called from the fleet's thread: what it offers is taken by the member's next `fetch()`, so
the member's loop thread alone swaps its desired state.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from agent.engine import Desired


class DesiredSource(Protocol):
    """What a Controller needs of its source (agent.controller._source.SourceFollower is one)."""

    @property
    def desired(self) -> Desired | None: ...

    @property
    def commit(self) -> str: ...

    @property
    def fetched(self) -> str: ...

    @property
    def invalid(self) -> dict[str, Any]: ...

    def fetch(self) -> float | None: ...

    def registry_tick(self, may_propose: bool) -> bool: ...


class FeedSource:
    """A member's source: the Desired its fleet offers (the newest offer wins). `token` names
    what was offered (the fleet's wave logic compares it with what the member applied)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offer: tuple[Desired, str, str] | None = None
        self.desired: Desired | None = None
        self.commit = ""
        self.fetched = ""
        self.token = ""
        self.invalid: dict[str, Any] = {}

    def offer(self, desired: Desired, commit: str, token: str) -> None:
        """Any thread (the fleet's): the member takes it at its next fetch()."""
        with self._lock:
            self._offer = (desired, commit, token)

    def fetch(self) -> float | None:
        """Loop thread: take the newest offer, if any."""
        with self._lock:
            offer, self._offer = self._offer, None
        if offer is not None:
            self.desired, self.commit, self.token = offer
            self.fetched = self.commit
        return None

    def registry_tick(self, may_propose: bool) -> bool:
        """The fleet's follower resolves registry references; a member never does."""
        return False
