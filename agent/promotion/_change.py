"""What a promotion asks for (`Change`), the error of one that cannot be made, and the
structured commit message (`describe`, read back by `trailers`). Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.errors import AgentError

Action = Literal["canary", "traffic", "stable", "rollback"]


class PromoteError(AgentError):
    """A promotion that cannot be made (unknown model or version, no canary, bad traffic, git)."""


@dataclass(frozen=True)
class Change:
    """canary: start or change the canary (version, traffic); traffic: move an existing
    canary's split; stable: make the canary version stable and drop the canary; rollback:
    drop the canary."""

    action: Action
    version: str | None = None
    traffic: int | None = None


def describe(change: Change, key: str, stable: str, canary: str | None, canary_traffic: int | None,
             rollout_traffic: int | None = None) -> str:
    """The commit message: a summary line, then trailers (Model, From-Version, To-Version, Traffic).
    From/To: the version the requests move from and to; Traffic: To-Version's share after it
    (`rollout_traffic`, where spec.rollout starts it, for a canary started with no traffic)."""
    source: str | None
    target: str | None
    traffic: int | None
    if change.action == "canary" and change.traffic is None:
        summary = f"canary {change.version}, its traffic decided by spec.rollout"
        source, target, traffic = stable, change.version, rollout_traffic
    elif change.action == "canary":
        summary = f"canary {change.version} at {change.traffic}%"
        source, target, traffic = stable, change.version, change.traffic
    elif change.action == "traffic":
        summary = f"canary {canary} at {change.traffic}% (was {canary_traffic}%)"
        source, target, traffic = stable, canary, change.traffic
    elif change.action == "stable":
        summary = f"{canary} stable (was {stable}), canary removed"
        source, target, traffic = stable, canary, 100
    else:
        summary = f"canary {canary} removed, {stable} stays stable"
        source, target, traffic = canary, stable, 100
    verb = "roll back" if change.action == "rollback" else "promote"
    return (f"{verb} {key}: {summary}\n\nModel: {key}\nAction: {change.action}\nFrom-Version: {source}\n"
            f"To-Version: {target}\n" + (f"Traffic: {traffic}\n" if traffic is not None else ""))


def trailers(message: str) -> dict[str, str]:
    """The `Key: value` trailers of a commit message's last paragraph."""
    last = message.strip().split("\n\n")[-1]
    found: dict[str, str] = {}
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            found[key] = value.strip()
    return found
