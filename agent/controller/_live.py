"""The controller's live state: the watch cache over what it manages, with its own writes on top.

`LiveState` keeps one LiveCache covering the kinds and namespaces of the desired objects and
of the inventory (worked out again only when either was replaced, not on every resync), and
the cache's echo filter: our own writes' watch echoes are no news, any other change to an
object we manage asks for a pass (`on_change`). `view()` is what a pass plans against.

Threads: the loop thread calls everything here; the cache's watch threads call the echo filter
and `_namespaces_of`, which only reads a map the loop thread swaps whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from agent.apply import ObjectResult
from agent.cache import EchoFilter, LiveCache
from agent.cluster import Cluster, Inventory, KindInfo
from agent.engine import Desired, selector
from agent.errors import AgentError
from agent.render import ObjectKey, object_key
from agent.spec import group_of


class LiveState:
    def __init__(self, cluster: Cluster, on_change: Callable[[], None]) -> None:
        self.cluster = cluster
        self.cache: LiveCache | None = None
        self.echo = EchoFilter(on_change)
        self._cached_for: Desired | None = None  # the desired state the cache's kinds and namespaces follow
        self._cached_inventory: Inventory | None = None  # the inventory object the cache's kinds follow
        self._managed_namespaces: dict[tuple[str, str], frozenset[str]] = {}
        self._keys_for: Desired | None = None
        self._keys: frozenset[ObjectKey] = frozenset()

    def manage(self, desired: Desired | None, inventory: Inventory | None) -> None:
        """Tell the echo filter which objects are ours: the desired ones and the inventory's."""
        if desired is not self._keys_for:
            self._keys_for = desired
            self._keys = frozenset(object_key(o) for o in desired.objects) if desired is not None else frozenset()
        self.echo.follow(self._keys.union(inventory.entries) if inventory is not None else self._keys)

    def wrote(self, result: ObjectResult) -> None:
        """Called as each write returns (before its watch echo, as a rule)."""
        if result.outcome == "applied" and result.live is not None:
            self.echo.wrote(result.live)
        elif result.outcome == "deleted":
            self.echo.deleted(result.change.key)

    def view(self, desired: Desired, inventory: Inventory | None) -> dict[ObjectKey, dict[str, Any]]:
        """The cache (covering `desired` and `inventory`), with our own latest writes over copies
        the watch has not brought yet. AgentError when it cannot be trusted to plan from."""
        if self.cache is None or desired is not self._cached_for or inventory is not self._cached_inventory:
            self._follow(desired, inventory)
        assert self.cache is not None
        if not self.cache.wait_synced(120):
            raise AgentError("the live cache did not sync within 120 s")
        denied = sorted(f"{kind} in {ns or 'all namespaces'}" for _group, kind, ns in self.cache.forbidden)
        if denied:  # the plan would take what it cannot see as missing: refuse to write from it
            raise AgentError(f"not allowed to list {', '.join(denied)}: grant the agent's ServiceAccount "
                             "list/watch there (deploy/README.md)")
        return self.echo.view(self.cache.objects())

    def _follow(self, desired: Desired, inventory: Inventory | None) -> None:
        wanted = {(str(o["apiVersion"]), str(o["kind"])) for o in desired.objects}
        infos = [self.cluster.kind(api_version, kind) for api_version, kind in sorted(wanted)]
        if inventory is not None:
            for api_version, kind in sorted({(e.api_version, e.kind) for e in inventory.entries.values()} - wanted):
                with contextlib.suppress(AgentError):  # a kind of an old commit the cluster no longer serves
                    infos.append(self.cluster.kind(api_version, kind))
        self._map_namespaces(desired, inventory)
        if self.cache is None:
            self.cache = LiveCache(self.cluster, infos, selector(), namespaces=self._namespaces_of)
            self.cache.subscribe(self.echo.on_watch)
            self.cache.start()
        else:
            known = {(i.api_version, i.kind) for i in self.cache.kinds}
            for info in infos:
                if (info.api_version, info.kind) not in known:
                    self.cache.add_kind(info)
            self.cache.refresh_namespaces()  # a least-privilege install lists per namespace: follow new ones
        self._cached_for, self._cached_inventory = desired, inventory

    def _map_namespaces(self, desired: Desired, inventory: Inventory | None) -> None:
        """(group, kind) -> namespaces of the desired objects and inventory entries."""
        out: dict[tuple[str, str], set[str]] = {}
        rows = [(str(o["apiVersion"]), str(o["kind"]), str(o["metadata"].get("namespace") or "")) for o in desired.objects]
        if inventory is not None:
            rows += [(e.api_version, e.kind, e.namespace) for e in inventory.entries.values()]
        for api_version, kind, ns in rows:
            if ns:
                out.setdefault((group_of(api_version), kind), set()).add(ns)
        self._managed_namespaces = {k: frozenset(v) for k, v in out.items()}

    def _namespaces_of(self, info: KindInfo) -> set[str]:
        """Where a kind is managed: where the cache lists it when it may not list it across all
        namespaces. Called from the cache's threads: it only reads a map the loop rebuilt."""
        return set(self._managed_namespaces.get((group_of(info.api_version), info.kind), ()))

    def stop(self) -> None:
        if self.cache is not None:
            self.cache.stop()
