"""Edge-fed memory: the live objects the agent manages, LIST + WATCH fed (gitops-engine pkg/cache).

The CLI lists once per run; a long-running controller keeps a LiveCache so its resyncs cost no
API request and it hears about each changed object as it changes.
"""

from agent.cache._cache import DEFAULT_WATCH_TIMEOUT, CacheStats, LiveCache, Namespaces
from agent.cache._echo import EchoFilter, older
from agent.cache._informer import Backoff, Callback, Forbidden, Lister, Watcher, list_kind
from agent.cache._store import ADDED, DELETED, MODIFIED

__all__ = [
    "ADDED",
    "DEFAULT_WATCH_TIMEOUT",
    "DELETED",
    "MODIFIED",
    "Backoff",
    "CacheStats",
    "Callback",
    "EchoFilter",
    "Forbidden",
    "Lister",
    "LiveCache",
    "Namespaces",
    "Watcher",
    "list_kind",
    "older",
]
