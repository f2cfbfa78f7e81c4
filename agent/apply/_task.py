"""The unit of work apply executes (gitops-engine's syncTask): a plan's redacted report of one
object together with the unredacted objects the request needs. Built by the engine from what it
planned with; never rendered, never leaves the engine and apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.plan import ObjectReport, Plan
from agent.render import ObjectKey


@dataclass(frozen=True)
class SyncTask:
    report: ObjectReport  # what the outputs show (redacted)
    desired: dict[str, Any] | None  # the unredacted desired object (None: a delete)
    live: dict[str, Any] | None  # the live object as read (uid, managedFields); None: a create

    @property
    def action(self) -> str:
        return self.report.action

    @property
    def key(self) -> ObjectKey:
        return self.report.key


def tasks_for(plan: Plan, desired: Mapping[ObjectKey, dict[str, Any]], live: Mapping[ObjectKey, dict[str, Any]],
              foreign: Mapping[ObjectKey, tuple[str, dict[str, Any]]] | None = None) -> list[SyncTask]:
    """One task per object of `plan`, in its order: the desired object (none for a delete) and
    the live one, this target's or, for a conflict or an adoption, another target's."""
    others = foreign or {}
    tasks = []
    for report in plan.objects:
        key = report.key
        have = live.get(key)
        if have is None and key in others:
            have = others[key][1]
        tasks.append(SyncTask(report, None if report.action == "delete" else desired.get(key), have))
    return tasks
