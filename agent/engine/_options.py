"""What the engine is asked to do: every filter and policy is an option, not a code path."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.cluster import FIELD_MANAGER, INVENTORY_NAMESPACE
from agent.plan import Selection


@dataclass(frozen=True)
class EngineOptions:
    prune: bool | None = None  # None: the repo config decides
    dry_run: bool = False
    allow_mass_prune: bool = False
    force_conflicts: bool = True
    concurrency: int = 8
    inventory_namespace: str = INVENTORY_NAMESPACE
    events: bool = True
    audit_log: Path | None = None
    manager: str = FIELD_MANAGER
    adopt: bool = False  # take over objects that carry another target's ownership label
    lock_timeout: float = 0.0  # seconds to wait for the target's Lease held by someone else
    stage_timeout: float = 120.0  # one-shot apply: seconds to wait for a staged canary's stable revision (0: no wait)
    audit_noop: bool = True  # a no-op gets its closing record (the controller's resyncs do not)
    stop: threading.Event | None = None  # set (SIGTERM): the object in flight finishes, no further write starts
    synced_by: str = "agent apply"  # who the inventory's last-sync mark names (the controller: "controller")
    sync_source: str = ""  # what the controller follows, for that mark (a URL without credentials, @branch)
    target: str = ""  # when set: the engine's target, a desired state of another target is refused
    select: Selection = field(default_factory=Selection)  # --model / -n: only these objects are planned and written
    stage_canaries: bool = True  # hold a new KServe model's canary back until its stable revision is Ready
    warn: Callable[[str], None] | None = None  # told at once why something is read partly (rollout states unreadable)
    rollout_traffic: bool = True  # plan with the traffic of the target's running rollouts (one GET of their states)
    audit_fields: Mapping[str, str] = field(default_factory=dict)  # added to every audit record (a fleet member: cluster, environment)
