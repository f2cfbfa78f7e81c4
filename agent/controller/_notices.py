"""What a controller tells the outside world and the web UI after each pass.

`PassNotices` turns passes into Events (agent.notify), each said once: a commit picked up
(`commit-pending`), applied or failed, drift detected (not healed: the drift policy is
`detect`, or the fight back-off holds) and healed. Audit records become Events through
`agent.notify.events_of_record` (the controller's `_audit`). `publish` puts the pass on the
board (agent.ui) by reference: no copy, no request."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent.audit import AuditLog
from agent.controller._config import RunConfig
from agent.engine import Desired, SyncResult
from agent.notify import Event, Sink, events_of_record
from agent.rollout import LiveRollouts
from agent.ui import Board, Published


class PassNotices:
    """Loop thread only. `labels`: the fleet member's environment and cluster ("" outside a fleet)."""

    def __init__(self, sink: Sink, labels: Mapping[str, str]) -> None:
        self.sink = sink
        self.environment = str(labels.get("environment", ""))
        self.cluster = str(labels.get("cluster", ""))
        self._pending = ""  # the commit whose pickup was said
        self._settled: tuple[str, str] = ("", "")  # (commit, "applied" | "failed") last said
        self._drifted: frozenset[str] = frozenset()  # the drifted objects last said (not healed)

    def _emit(self, kind: str, target: str, commit: str, message: str, **details: Any) -> None:
        self.sink.emit(Event(kind, target, commit=commit, message=message, environment=self.environment,
                             cluster=self.cluster, details=details))

    def picked_up(self, desired: Desired, synced: str = "") -> None:
        """Before the pass writes: a commit not seen before is pending. `synced`: the commit the
        inventory's last-sync mark records; at a start, that commit was settled by an earlier run
        (applied, perhaps rolled back since): nothing new is said of it."""
        commit = desired.revision.commit
        if not commit or commit == self._pending:
            return
        first = not self._pending
        self._pending = commit
        if first and commit == synced:
            self._settled = (commit, "applied")
            return
        target = desired.spec.config.name
        self._emit("commit-pending", target, commit, f"commit {commit[:12]}: applying to {self._where(target)}",
                   **_revision(desired))

    def after(self, desired: Desired, outcome: SyncResult, new_commit: bool) -> None:
        """After the pass: the commit's outcome (once per commit and outcome), drift."""
        target = desired.spec.config.name
        commit = desired.revision.commit
        plan = outcome.plan
        written = {r.change.ref for r in outcome.report.results if r.outcome in ("applied", "deleted")}
        drifted = frozenset(c.ref for c in plan.changed if c.drift)
        if commit:
            if outcome.ok and not (plan.has_changes and not outcome.report.results):
                if self._settled != (commit, "applied"):
                    self._settled = (commit, "applied")
                    self._emit("commit-applied", target, commit,
                               f"commit {commit[:12]} applied to {self._where(target)}", applied=len(written),
                               **_revision(desired))
            elif not outcome.ok and self._settled != (commit, "failed"):
                self._settled = (commit, "failed")
                failures = [f"{r.change.ref}: {r.message}" for r in outcome.report.failed]
                reason = outcome.inventory_error or "; ".join(failures[:3])
                self._emit("commit-failed", target, commit,
                           f"commit {commit[:12]} failed to apply to {self._where(target)}: {reason}"[:300],
                           failures=failures[:20], **_revision(desired))
        healed = sorted(ref for ref in drifted if ref in written)
        if healed and not new_commit:
            self._emit("drift-healed", target, commit, f"drift healed on {self._where(target)}: {', '.join(healed[:5])}"
                       + (f" and {len(healed) - 5} more" if len(healed) > 5 else ""), objects=healed)
        left = frozenset(ref for ref in drifted if ref not in written)
        if left and left != self._drifted:
            shown = sorted(left)
            self._emit("drift-detected", target, commit, f"drift on {self._where(target)}: {', '.join(shown[:5])}"
                       + (f" and {len(shown) - 5} more" if len(shown) > 5 else ""), objects=shown,
                       fields={c.ref: sorted(c.drift) for c in plan.changed if c.ref in left})
        self._drifted = left

    def _where(self, target: str) -> str:
        return f"{self.environment}/{self.cluster}" if self.cluster else target


def _revision(desired: Desired) -> dict[str, Any]:
    rev = desired.revision
    out: dict[str, Any] = {"author": rev.author, "title": rev.message.splitlines()[0] if rev.message else ""}
    if rev.pull_request:
        out["pullRequest"] = rev.pull_request
    return out


def record_and_tell(config: RunConfig, sink: Sink, desired: Desired | None, event: str,
                    record: dict[str, Any]) -> None:
    """The one way a controller (or a fleet) records: the Events the audit record makes
    (agent.notify.events_of_record), then the record itself when there is an audit log."""
    for notice in events_of_record(event, record, desired.spec.config.name if desired is not None else ""):
        sink.emit(notice)
    if config.audit_log is None:
        return
    with AuditLog(config.audit_log, config.identity) as audit:
        audit.write(event, **record)


def publish(board: Board, desired: Desired, live: Mapping[Any, dict[str, Any]], annotations: Mapping[str, str],
            rollouts: LiveRollouts, labels: Mapping[str, str], *, outcome: SyncResult | None, error: str,
            prometheus: Any | None, audit_log: Any | None) -> None:
    """Put a pass on the board (references only: the pass's dicts are not mutated after it)."""
    drift: dict[str, tuple[str, ...]] = {}
    if outcome is not None:
        written = {r.change.ref for r in outcome.report.results if r.outcome in ("applied", "deleted")}
        for c in outcome.plan.changed:
            if c.drift and c.ref not in written:
                drift[c.model or ""] = (*drift.get(c.model or "", ()), c.ref)
    board.publish(Published(target=desired.spec.config.name, desired=desired, live=live, annotations=annotations,
                            rollouts=rollouts, at=time.time(), environment=str(labels.get("environment", "")),
                            cluster=str(labels.get("cluster", "")), drift=drift, error=error,
                            prometheus=prometheus, audit_log=audit_log))
