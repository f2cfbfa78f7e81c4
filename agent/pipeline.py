"""Transition shim: the desired state moved to agent.engine. Removed once cli, demo, the
controller and the remaining tests import from agent.engine."""

from agent.engine import (
    Desired,
    has_moving_refs,
    has_registry_refs,
    load_desired,
    offline_plan,
    registries_for,
    resolutions_key,
    resolve_registries,
    revision_info,
    with_traffic,
)

__all__ = [
    "Desired", "has_moving_refs", "has_registry_refs", "load_desired", "offline_plan", "registries_for",
    "resolutions_key", "resolve_registries", "revision_info", "with_traffic",
]
