"""DIR/state.json: what `up` started (pids, start times, ports), so `down` finds it again.

Written after every process start, so even an interrupted `up` can be cleaned up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.cluster._components import Ports
from devenv.cluster._processes import Proc

VERSION = 1


@dataclass
class State:
    cache: Path
    ports: Ports
    server: str
    processes: list[Proc] = field(default_factory=list)
    ready: bool = False
    # The etcd data holds a cluster that was ready once: worth keeping across a restart.
    initialized: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "cache": str(self.cache),
            "ports": self.ports.as_dict(),
            "server": self.server,
            "processes": [p.to_json() for p in self.processes],
            "ready": self.ready,
            "initialized": self.initialized,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> State:
        return cls(
            cache=Path(raw["cache"]),
            ports=Ports(**{k: int(v) for k, v in raw["ports"].items()}),
            server=str(raw["server"]),
            processes=[Proc.from_json(p) for p in raw["processes"]],
            ready=bool(raw["ready"]),
            initialized=bool(raw.get("initialized", raw["ready"])),
        )


def load(path: Path) -> State | None:
    """The recorded state, or None if there is none (or it is unreadable: nothing to trust)."""
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        return None
    try:
        return State.from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None


def save(path: Path, state: State) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
