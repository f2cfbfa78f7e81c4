"""A Plan is data: the same object feeds text/JSON/Markdown output, the audit log and apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent.render import ObjectKey
from agent.spec import group_of

Action = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True)
class ObjectReport:
    """One object's change as every output renders it: redacted, immutable (build a changed
    copy with dataclasses.replace). The unredacted objects apply needs never ride along: the
    engine keeps them apart (agent.apply.SyncTask)."""

    action: Action
    api_version: str
    kind: str
    namespace: str
    name: str
    model: str | None
    before: dict[str, Any] | None  # redacted, normalized
    after: dict[str, Any] | None  # redacted
    changed_fields: list[str] = field(default_factory=list)
    drift: dict[str, str] = field(default_factory=dict)  # field path -> other field manager
    owner_conflict: str = ""  # the other target whose ownership label the live object carries

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def key(self) -> ObjectKey:
        """(group, kind, namespace, name), as agent.render.object_key names the object."""
        return (group_of(self.api_version), self.kind, self.namespace, self.name)




@dataclass
class ModelChange:
    namespace: str
    name: str
    status: Literal["created", "updated", "deleted", "unchanged"]
    changes: list[str]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RolloutNote:
    """What a model's running rollout is doing, shown beside its plan: while a rollout runs the
    live traffic is the rollout's step, not Git's number, and a reviewer must see why.
    step is 1-based (step 2 of 3); message is one line for people."""

    phase: str
    step: int
    steps: int
    traffic: int
    version: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "step": self.step, "steps": self.steps, "traffic": self.traffic,
                "version": self.version, "message": self.message}


@dataclass
class Plan:
    objects: list[ObjectReport]
    models: list[ModelChange]
    base: dict[str, str] = field(default_factory=dict)  # revision info of the "before" side
    revision: dict[str, str] = field(default_factory=dict)  # revision info of the desired side
    rollouts: dict[str, RolloutNote] = field(default_factory=dict)  # model key -> its running rollout (live plans)
    notes: dict[str, list[str]] = field(default_factory=dict)  # model key -> what a reviewer must know besides

    @property
    def changed(self) -> list[ObjectReport]:
        return [o for o in self.objects if o.action != "unchanged"]

    @property
    def conflicts(self) -> list[ObjectReport]:
        """Objects that exist under another target's ownership label: never taken silently."""
        return [o for o in self.objects if o.owner_conflict]

    @property
    def has_changes(self) -> bool:
        return any(o.action != "unchanged" for o in self.objects)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for o in self.objects:
            out[o.action] += 1
        return out
