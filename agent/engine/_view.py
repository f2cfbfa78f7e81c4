"""The live view a plan is made against: the target's objects, other targets' objects and the
inventory. One protocol, two implementations: ListView (one LIST per managed kind, the CLI) and
CacheView (the controller's watch cache: a resync makes no request)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.cluster import INVENTORY_NAMESPACE, Cluster, ClusterError, Inventory, KindInfo, load_inventory
from agent.render import MANAGED_BY, MANAGED_BY_LABEL, TARGET_LABEL, ObjectKey, object_key


@dataclass
class Observed:
    live: dict[ObjectKey, dict[str, Any]]  # objects of this target
    inventory: Inventory
    foreign: dict[ObjectKey, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key -> (other target, object)

    @property
    def stale(self) -> list[ObjectKey]:
        """Inventory entries whose objects are gone (deleted by someone, or a create that never
        happened after its intent was recorded): dropped at the next write."""
        return sorted(k for k in self.inventory.entries if k not in self.live)


class View(Protocol):
    """Where the engine reads the live state of a target from."""

    def observe(self, desired: list[dict[str, Any]], target: str) -> Observed: ...


def selector(target: str | None = None) -> str:
    """Our objects (of one target, or of every target when None)."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY}" + (f",{TARGET_LABEL}={target}" if target else "")


@dataclass(frozen=True)
class ListView:
    """One LIST per managed kind (label selector: managed by us, any target, so an object of
    another target is seen and never taken over silently) + one GET of the inventory."""

    cluster: Cluster
    inventory_namespace: str = INVENTORY_NAMESPACE

    def observe(self, desired: list[dict[str, Any]], target: str) -> Observed:
        return observe(self.cluster, desired, target, self.inventory_namespace)


@dataclass(frozen=True)
class CacheView:
    """The controller's watch cache as one pass sees it: every managed object it holds (any
    target) and the target's inventory as the controller keeps it. A plan against it makes no
    request."""

    objects: Collection[dict[str, Any]]
    inventory: Inventory

    def observe(self, desired: list[dict[str, Any]], target: str) -> Observed:
        return observed_from(self.objects, self.inventory, target)


def observe(cluster: Cluster, desired: list[dict[str, Any]], target: str,
            inventory_namespace: str = INVENTORY_NAMESPACE) -> Observed:
    inventory = load_inventory(cluster, target, inventory_namespace)
    kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in desired}
    kinds |= {(e.api_version, e.kind) for e in inventory.entries.values()}
    sel = selector()  # every target's: an object of another target must be seen to be refused
    infos = [cluster.kind(api_version, kind) for api_version, kind in sorted(kinds)]
    namespaces: dict[tuple[str, str], set[str]] = {}
    for api_version, kind, ns in [(str(o["apiVersion"]), str(o["kind"]), str(o["metadata"].get("namespace") or ""))
                                  for o in desired] + [(e.api_version, e.kind, e.namespace) for e in inventory.entries.values()]:
        if ns:
            namespaces.setdefault((api_version, kind), set()).add(ns)

    def list_kind(info: KindInfo) -> list[dict[str, Any]]:
        """One LIST over every namespace; where that is forbidden (a least-privilege install,
        RoleBindings per managed namespace), one LIST per namespace the kind is managed in."""
        if (info.api_version, info.kind) not in cluster.namespace_scoped:
            try:
                return list(cluster.list(info, sel))
            except ClusterError as exc:
                if exc.status != 403 or not info.namespaced:
                    raise
                cluster.namespace_scoped.add((info.api_version, info.kind))
        return [obj for ns in sorted(namespaces.get((info.api_version, info.kind), ()))
                for obj in cluster.list(info, sel, namespace=ns)]

    with ThreadPoolExecutor(max_workers=4) as pool:  # the LISTs are independent: overlap their latency
        listed = [obj for items in pool.map(list_kind, infos) for obj in items]
    return observed_from(listed, inventory, target)


def observed_from(objects: Iterable[dict[str, Any]], inventory: Inventory, target: str) -> Observed:
    """Observed state from objects managed by the agent (any target): ours apart from others'.
    The controller builds it from its watch cache, the CLI from its LISTs."""
    live: dict[ObjectKey, dict[str, Any]] = {}
    foreign: dict[ObjectKey, tuple[str, dict[str, Any]]] = {}
    for obj in objects:
        owner = ((obj.get("metadata") or {}).get("labels") or {}).get(TARGET_LABEL, "")
        if owner == target:
            live[object_key(obj)] = obj
        else:
            foreign[object_key(obj)] = (owner, obj)
    return Observed(live=live, inventory=inventory, foreign=foreign)
