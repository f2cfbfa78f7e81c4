"""The desired state of a target: a commit read (source), validated (spec), its registry
references resolved (resolve) and rendered (render); and the offline diff of two revisions.
No cluster: `agent validate`, `render` and `diff --base` need nothing else, and the engine
plans what this loads."""

from agent.desired._cache import cache_root
from agent.desired._load import (
    Desired,
    environment_order,
    for_environment,
    has_moving_refs,
    has_registry_refs,
    load_desired,
    offline_plan,
    offline_plans,
    registries_for,
    resolutions_key,
    resolve_registries,
    revision_info,
    with_traffic,
)

__all__ = [
    "Desired", "cache_root", "environment_order", "for_environment", "has_moving_refs", "has_registry_refs", "load_desired", "offline_plan", "offline_plans",
    "registries_for", "resolutions_key", "resolve_registries", "revision_info", "with_traffic",
]
