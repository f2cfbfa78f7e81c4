"""Execute a Plan through the cluster edge: ordered phases, bounded concurrency, per-object
results. Retries with backoff live in the cluster client; the conflict policy lives here."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.apply._task import SyncTask
from agent.cluster import Cluster, ClusterError
from agent.errors import AgentError
from agent.plan import ObjectReport, Plan, owned_fields_hash
from agent.render import phase

Outcome = Literal["applied", "deleted", "skipped", "failed", "unchanged"]


@dataclass
class ObjectResult:
    change: ObjectReport
    outcome: Outcome
    message: str = ""
    live: dict[str, Any] | None = None  # the object as stored after apply
    fields: str = ""  # owned-fields hash after apply
    uid: str = ""  # the live object's uid as read before the request (an Event names it)


@dataclass
class ApplyReport:
    results: list[ObjectResult] = field(default_factory=list)

    @property
    def failed(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


class PruneRefused(AgentError):
    """The plan deletes more than the prune budget allows."""

    plan: Plan | None = None  # the refused plan, for the caller to show


def check_prune_budget(plan: Plan, managed: int, max_fraction: float, max_count: int) -> None:
    deletions = [o for o in plan.objects if o.action == "delete"]
    n = len(deletions)
    if n == 0:
        return
    fraction = n / max(managed, 1)
    if n > max_count or fraction > max_fraction:
        raise PruneRefused(
            f"refusing to prune {n} of {managed} managed objects ({fraction:.0%}): the budget is "
            f"{max_count} objects and {max_fraction:.0%}; an emptied or broken repo looks like this. "
            "Re-run with --allow-mass-prune if it is intended."
        )


_MANAGERS = re.compile(r'conflict with "([^"]+)"')


def _conflict_message(exc: ClusterError) -> str:
    managers = sorted(set(_MANAGERS.findall(str(exc))))
    who = ", ".join(managers) if managers else "another field manager"
    return f"conflict with {who}; skipped (policy: conflicts=skip)"


def execute(
    cluster: Cluster,
    tasks: list[SyncTask],
    *,
    manager: str,
    force: bool,
    concurrency: int = 8,
    on_result: Callable[[ObjectResult], None] | None = None,
    before: Callable[[ObjectReport], None] | None = None,
) -> ApplyReport:
    """Apply creates/updates phase by phase, then delete in reverse phase order.

    `before(change)` runs right before each write (the audit intent, the Lease check); when it
    raises AgentError the object is not written and fails with that message. `on_result` runs
    as each result comes in, so a crash loses no result that was already reported."""
    report = ApplyReport()
    writes = [t for t in tasks if t.action in ("create", "update")]
    deletes = [t for t in tasks if t.action == "delete"]

    def do_apply(task: SyncTask) -> ObjectResult:
        change, uid = task.report, _uid(task.live)
        assert task.desired is not None
        try:
            if before is not None:
                before(change)
            live = cluster.apply(task.desired, force=force, field_manager=manager)
        except ClusterError as exc:
            if exc.status == 409 and not force:
                return ObjectResult(change, "skipped", _conflict_message(exc), uid=uid)
            return ObjectResult(change, "failed", str(exc), uid=uid)
        except AgentError as exc:
            return ObjectResult(change, "failed", str(exc), uid=uid)
        return ObjectResult(change, "applied", "", live, owned_fields_hash(live, manager), uid=uid)

    def do_delete(task: SyncTask) -> ObjectResult:
        change, uid = task.report, _uid(task.live)
        assert change.before is not None
        try:
            if before is not None:
                before(change)
            cluster.delete(task.live or change.before)
        except (ClusterError, AgentError) as exc:
            return ObjectResult(change, "failed", str(exc), uid=uid)
        return ObjectResult(change, "deleted", uid=uid)

    def run(batch: list[SyncTask], fn: Callable[[SyncTask], ObjectResult]) -> None:
        done: dict[int, ObjectResult] = {}
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = {pool.submit(fn, change): i for i, change in enumerate(batch)}
            for future in as_completed(futures):
                result = future.result()
                done[futures[future]] = result
                if on_result is not None:
                    on_result(result)
        report.results.extend(done[i] for i in sorted(done))

    for p in sorted({phase(t.report.kind) for t in writes}):
        run([t for t in writes if phase(t.report.kind) == p], do_apply)
    for p in sorted({phase(t.report.kind) for t in deletes}, reverse=True):
        run([t for t in deletes if phase(t.report.kind) == p], do_delete)
    return report


def _uid(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("uid") or "")
