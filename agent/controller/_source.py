"""The source follower: from the followed Git branch (or working copy) to the desired state.

Runs on the loop thread. `fetch()` (a poll, a webhook push, the start) brings the newest
commit in (a head check first, a fetch only when it moved) and loads it: parse, validate,
verify its signature, decrypt SOPS, resolve its registry references, check it may write to Git.
A good commit becomes `desired`, which the loop applies. An invalid commit (or one
`--verify-signatures` refuses) applies nothing: the last good one stays in force and the
failure is reported (log, metric, Warning Event, audit record, and through `annotate` on the
inventory). `registry_tick()` resolves the followed commit's aliases and stages again and lets
the leader propose moved aliases as pull requests.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.apply import make_event
from agent.cluster import Cluster, ClusterError, Inventory
from agent.controller._metrics import Metrics
from agent.controller._registry import RegistryFollower
from agent.controller._signers import SignersFile
from agent.controller._write_access import WriteAccess, WriteAccessDenied
from agent.engine import Desired, has_registry_refs, load_desired, resolve_registries
from agent.errors import AgentError, SignatureError, SourceError, ValidationFailed
from agent.registry import RegistryError
from agent.source import Backoff, Mirror
from agent.spec import Loader

log = logging.getLogger("modelops.controller")


@dataclass
class Status:
    """What the probes and the logs tell (written by the loop thread, read by the HTTP thread)."""

    ready: bool = False
    last_error: str = ""  # of the last pass (plan/apply), or why the first sync has not happened
    source_error: str = ""  # of the last fetch ("" once the remote answers again)
    registry_error: str = ""  # why the newest commit's registry references did not resolve ("" once they do)
    unreachable: str = ""  # why the last pass could not reach the API server ("" once one did)


class SourceFollower:
    """`annotate(value)` records the invalid commit on the inventory (None: a good one again);
    `record(event, **fields)` writes the audit log."""

    def __init__(self, *, where: Path | None, path: str, mirror: Mirror | None, interval: float,
                 signers: SignersFile | None, write_access: WriteAccess, registry: RegistryFollower,
                 cluster: Cluster | None, inventory_namespace: str, metrics: Metrics, status: Status,
                 record: Callable[..., None], annotate: Callable[[str | None], None]) -> None:
        self.working_copy = where  # --watch-dir (no mirror)
        self.path = path
        self.mirror = mirror
        self.signers = signers
        self.write_access = write_access
        self.registry = registry
        self.cluster = cluster
        self.inventory_namespace = inventory_namespace
        self.metrics = metrics
        self.status = status
        self._record = record
        self._annotate = annotate
        self.loader = Loader()  # its reuse of the previous commit's parsed files is this follower's own
        self.desired: Desired | None = None  # the last good commit
        self.unresolved: Desired | None = None  # the same, its registry references unresolved
        self.where: Path | None = None  # the model repo of self.desired (for a registry's relative paths)
        self.commit = ""  # the commit of self.desired ("" for a working copy)
        self.fetched = ""  # the newest commit seen, good or not
        self.invalid: dict[str, Any] = {}  # the newest invalid commit and its errors
        self._backoff = Backoff(initial=2.0, maximum=max(2.0, 5 * interval))

    def fetch(self) -> float | None:
        """Bring the newest commit in and load it if it is new. Returns a backoff delay after a
        failed fetch (None: the normal interval)."""
        if self.mirror is None:
            self._load(None)
            return None
        status = self.status
        try:
            head = self.mirror.head()
            if head != self.fetched or self.mirror.local_head() != head:
                head = self.mirror.sync()
        except SourceError as exc:
            self.metrics.fetch_error()
            status.source_error = str(exc)
            delay = self._backoff.failure()
            log.warning("git: %s; keeping commit %s, next try in %.0f s", exc, self.commit[:12] or "(none)", delay)
            return delay
        self._backoff.success()
        status.source_error = ""
        if head != self.fetched or (self.signers is not None and self.signers.changed_since_refusal()):
            self.fetched = head
            self._load(head)
        return None

    def _load(self, commit: str | None) -> None:
        if commit is None:
            assert self.working_copy is not None
            where: str | Path = self.working_copy
        else:
            assert self.mirror is not None
            where = self.mirror.path / self.path if self.path else self.mirror.path
        name = commit or "working tree"
        try:
            signers = self.signers.current() if self.signers is not None else None
            unresolved = load_desired(where, commit, loader=self.loader, resolve=False, signers=signers)
            desired = resolve_registries(unresolved, where, self.registry.registries(unresolved, where)
                                         if has_registry_refs(unresolved.spec) else None)
        except ValidationFailed as exc:
            self._invalid(name, exc)
            return
        except SignatureError as exc:  # refused like an invalid commit, reported as a refusal
            self._invalid(name, ValidationFailed([], revision=str(exc)), refused=exc)
            return
        except SourceError as exc:
            self._invalid(name, ValidationFailed([], revision=str(exc)))
            return
        except RegistryError as exc:
            # not the commit's fault: keep the last good state and try this commit again
            self.fetched = ""
            self.status.registry_error = str(exc)
            self.metrics.registry_event("error")
            log.error("commit %s: %s; %s stays in force, retrying", name[:12], exc, self.commit[:12] or "nothing")
            return
        except AgentError as exc:  # the signers file unusable, or git could not verify in time: retried
            self.fetched = ""
            self.status.last_error = str(exc)
            log.error("commit %s: %s; %s stays in force, retrying", name[:12], exc, self.commit[:12] or "nothing")
            return
        if self.desired is not None and desired.spec.config.name != self.desired.spec.config.name:
            self._invalid(name, ValidationFailed([], revision=(
                f"the target changed from {self.desired.spec.config.name!r} to {desired.spec.config.name!r}: "
                "a running controller keeps its target; restart it to switch")))
            return
        if not self._may_write_git(desired, commit):
            return
        self.desired = desired
        self.unresolved, self.where = unresolved, Path(where)
        self.status.registry_error = ""
        self._annotate(None)  # a good commit again: status no longer reports the bad one
        self.commit = commit or ""
        self.invalid = {}
        if self.signers is not None:
            self.signers.accepted()
        signed = f", signed by {desired.revision.signer}" if desired.revision.signer else ""
        log.info("loaded %s: %d objects%s", name[:12], len(desired.objects), signed)

    def _may_write_git(self, desired: Desired, commit: str | None) -> bool:
        """A commit whose rollouts (or registry sync) write to Git needs credentials that may push:
        at start the agent refuses to run without them (exit 2); a later commit is refused like
        an invalid one (the last good stays). False when this commit must not be taken on."""
        try:
            self.write_access.check(desired.spec)
        except WriteAccessDenied as exc:
            if self.desired is None:
                log.error("%s", exc)
                raise
            self._invalid(commit or "working tree", ValidationFailed([], revision=str(exc)))
            return False
        except SourceError as exc:  # the remote did not answer the check: this commit again at the next poll
            self.fetched = ""
            self.status.last_error = str(exc)
            log.error("commit %s: could not check write access to Git: %s; retrying", (commit or "")[:12], exc)
            return False
        return True

    def registry_tick(self, may_propose: bool) -> bool:
        """Resolve the followed commit's aliases and stages again (every controller: a follower
        stays ready to lead), and (`may_propose`: the leader) propose moved aliases as PRs. True
        when the desired state changed and needs a pass."""
        desired, unresolved, where, status = self.desired, self.unresolved, self.where, self.status
        if desired is None or unresolved is None or where is None:
            return False
        changed = False
        try:
            fresh = self.registry.refresh(unresolved, desired, where)
        except ValidationFailed as exc:  # a gate the alias's new version misses: keep the old one
            error = "; ".join(str(e) for e in exc.errors)[:500]
            log.error("registry: the moved reference is refused, keeping what is applied: %s", error)
            if error != status.registry_error:  # once per refusal, not every tick
                self.metrics.registry_event("refused")
                self._record("registry-refused", errors=[str(e) for e in exc.errors][:20])
            status.registry_error = error
            fresh = None
        except RegistryError as exc:
            status.registry_error = str(exc)
            self.metrics.registry_event("error")
            log.error("registry: %s; keeping what is applied, retrying", exc)
            return False
        else:
            status.registry_error = ""
        if fresh is not None and self.desired is desired:
            self.desired = fresh
            self.metrics.registry_event("moved")
            changed = True
        if self.registry.sync_alias is not None and may_propose:
            try:
                made = self.registry.propose(unresolved, where)
                self.registry.last_error = ""
                if made:
                    self.metrics.registry_event("proposed", len(made))
            except (AgentError, OSError) as exc:
                error = str(exc)[:500]
                log.error("registry sync: %s", exc)
                if error != self.registry.last_error:  # once per distinct failure, not every tick
                    self.metrics.registry_event("proposal_error")
                    self._record("registry-proposal", error=error)
                self.registry.last_error = error
        return changed

    def _invalid(self, commit: str, exc: ValidationFailed, refused: SignatureError | None = None) -> None:
        """An invalid commit, or (`refused`) one --verify-signatures refuses: nothing of it applies."""
        errors = [str(e) for e in exc.errors] or [exc.revision]
        self.invalid = {"commit": commit, "errors": errors[:20],
                        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        signed: dict[str, Any] = {}
        if refused is not None:
            signed = {"reason": "signature", "signer": refused.signer}
            self.invalid.update(signed)
            self.metrics.commit_refused("signature")
            if self.signers is not None:
                self.signers.refused()
        else:
            self.metrics.invalid_commit()
        self.status.last_error = f"commit {commit[:12]} is {'refused' if refused else 'invalid'}: {errors[0]}"
        log.error("commit %s is %s, nothing applied, %s stays in force: %s", commit[:12],
                  "refused" if refused else "invalid", self.commit[:12] or "nothing", "; ".join(errors[:5]))
        self._record("unverified-commit" if refused else "invalid-commit", commit=commit, errors=errors[:20],
                     kept=self.commit, **signed)
        self._event_invalid(commit, errors, refused=refused is not None)
        self._annotate(json.dumps(self.invalid, sort_keys=True))

    def _event_invalid(self, commit: str, errors: list[str], refused: bool = False) -> None:
        """A Warning Event on the inventory, where `kubectl get events -n modelops-system` shows it
        (none without a cluster: a fleet's follower calls no member's API server)."""
        if self.desired is None or self.cluster is None:
            return
        namespace = self.inventory_namespace
        inventory = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace,
                     "name": Inventory(target=self.desired.spec.config.name).name}
        what, reason = ("refused", "UnverifiedCommit") if refused else ("invalid", "InvalidCommit")
        event = make_event(inventory, reason, f"commit {commit[:12]} is {what} and was not applied "
                           f"({self.commit[:12] or 'nothing'} stays): " + "; ".join(errors[:3]), warning=True)
        with contextlib.suppress(ClusterError, AgentError):
            self.cluster.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event, retries=0)
