"""What the agent tells the outside world: one Event per thing a team wants to hear of (a
commit applied, a rollout rolled back, a registry alias moved), and the Sink that takes them.

The controller makes Events in two places: from its audit records (`events_of_record`: one
translation, so a notification never says something the audit log does not) and from a
pass's outcome (a commit picked up, applied or failed; drift detected or healed). A Sink's
`emit` never blocks and never raises: delivery is the notifier's business, off the loop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Every kind of Event, in the order the docs list them.
EVENT_KINDS = (
    "commit-pending",  # a new commit was picked up: its objects are being applied
    "commit-applied",  # every object of the commit is applied
    "commit-failed",  # the apply failed (an object refused, the API server down)
    "commit-invalid",  # the commit does not validate (or its signature does not verify): nothing applied
    "drift-detected",  # live objects differ from Git and no commit changed them
    "drift-healed",  # drifted objects written back to what Git says
    "rollout-started",
    "rollout-step",
    "rollout-rolled-back",  # rolled back by its analysis, or aborted (the new version lost its traffic)
    "rollout-succeeded",
    "registry-moved",  # a registry alias or tag now resolves to another version
    "registry-refused",  # the version it moved to misses a gate: the old one stays
    "promotion-opened",  # a promotion (between environments, or a registry alias sync) was proposed or pushed
)

# the rollout transitions (agent.rollout) that are Events, and which
_ROLLOUT = {"started": "rollout-started", "advanced": "rollout-step", "rolled-back": "rollout-rolled-back",
            "aborted": "rollout-rolled-back", "succeeded": "rollout-succeeded", "promoted": "rollout-succeeded"}


@dataclass(frozen=True)
class Event:
    """One thing that happened, for people (`message`: one line) and programs (`details`).
    `model` is "namespace/name" ("" for a target-wide event such as a commit); `environment`
    and `cluster` name a fleet member ("" outside a fleet)."""

    kind: str
    target: str
    commit: str = ""
    model: str = ""
    message: str = ""
    environment: str = ""
    cluster: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")


class Sink(Protocol):
    """Where Events go. `emit` returns at once and never raises; `close` lets what is queued go
    out within `timeout` seconds, then drops the rest."""

    def emit(self, event: Event) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


class NullSink:
    """No notification configured: Events go nowhere."""

    def emit(self, event: Event) -> None:
        return None

    def close(self, timeout: float = 5.0) -> None:
        return None


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def events_of_record(name: str, fields: Mapping[str, Any], target: str) -> list[Event]:
    """The Events an audit record `name` with `fields` makes (most make none): the one place
    the audit vocabulary turns into the notifications' one."""
    def make(kind: str, message: str, details: Mapping[str, Any], *, model: str = "", environment: str = "") -> Event:
        return Event(kind, target, commit=str(fields.get("commit") or ""), model=model, message=message,
                     environment=environment or str(fields.get("environment") or ""),
                     cluster=str(fields.get("cluster") or ""), details=details)

    model = str(fields.get("model") or "")
    if name in ("invalid-commit", "unverified-commit"):
        errors = [str(e) for e in fields.get("errors") or []]
        what = "refused: its signature does not verify" if name == "unverified-commit" else "invalid"
        first = f": {_one_line(errors[0], 200)}" if errors else ""
        commit = str(fields.get("commit") or "")
        return [make("commit-invalid", f"commit {commit[:12]} is {what}, nothing applied{first}",
                     {"errors": errors[:20], "kept": str(fields.get("kept") or "")})]
    if name == "rollout" and str(fields.get("transition")) in _ROLLOUT:
        transition = str(fields["transition"])
        version = str(fields.get("version") or "")
        traffic = fields.get("traffic")
        step = fields.get("step")
        reason = _one_line(fields.get("reason") or transition, 200)
        return [make(_ROLLOUT[transition], f"{model} {version}: rollout {transition.replace('-', ' ')}: {reason}",
                     {"version": version, "step": step, "traffic": traffic, "transition": transition,
                      "checks": list(fields.get("checks") or [])}, model=model)]
    if name == "registry-moved":
        lines = [str(line) for line in fields.get("moved") or []]
        return [make("registry-moved", _one_line("registry: " + "; ".join(lines)), {"moved": lines})]
    if name == "registry-refused":
        errors = [str(e) for e in fields.get("errors") or []]
        return [make("registry-refused", _one_line(
            "registry: the moved reference is refused, the applied version stays: " + "; ".join(errors[:3])),
            {"errors": errors[:20]})]
    if name == "environment-promotion" and fields.get("outcome") in ("proposed", "pushed"):
        url = str(fields.get("pull_request") or "")
        version = str(fields.get("version") or "")
        where = str(fields.get("to") or "")
        how = f"pull request {url}" if url else "pushed"
        return [make("promotion-opened", f"promotion of {model} {version} to {where}: {how}",
                     {"version": version, "to": where, "url": url, "policy": str(fields.get("policy") or "")},
                     model=model, environment=where)]
    if name == "registry-proposal" and fields.get("pull_request"):
        url = str(fields["pull_request"])
        return [make("promotion-opened", f"registry sync of {model} to {fields.get('to')}: pull request {url}",
                     {"version": str(fields.get("to") or ""), "url": url, "alias": str(fields.get("alias") or "")},
                     model=model)]
    return []
