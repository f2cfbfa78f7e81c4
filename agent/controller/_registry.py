"""The controller's registry edge: follow moving references, propose moved aliases.

Two jobs on one interval (`agent run --registry-interval`), both on the followed commit:

- **re-resolve**: a commit that names an alias or a stage (`registry: {mlflow: {alias:
  champion}}`) chose to follow it. Resolving when a commit loads is not enough: the alias can
  move while the commit stays. Each tick asks the registry again (one GET per reference: what a
  version's answer leads to is cached by the answer) and, when some reference now resolves to
  another version, hands the controller a new desired state to apply. Pinned versions are
  immutable and never asked again.
- **propose** (`--registry-sync-alias`): for models whose stable entry *pins* a registry
  version, a moved alias becomes a promotion PR (agent.promotion.plan_sync/publish), never a deploy behind
  Git's back. The cheap part (one GET per model) runs on the followed commit; only a moved
  alias costs a clone, a commit, a push and a forge call, once per (model, version) per
  process; a restarted controller finds the branch and the PR and makes no second one.

A registry that cannot answer keeps what is applied and is tried again next tick.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.controller._rollouts import WriteBack
from agent.engine import Desired, has_moving_refs, registries_for, resolve_registries
from agent.errors import AgentError
from agent.forge import open_forge, repo_ref
from agent.promotion import moved_to, plan_sync, publish
from agent.source import GitAuth, PushPlan, clone_branch, git_head

log = logging.getLogger("agent.controller.registry")

SyncAs = Literal["canary", "stable"]


def moved(before: Desired, after: Desired) -> list[str]:
    """One line per reference that resolves differently now:
    `fraud/fraud-scorer champion: mlflow fraud-scorer@champion 12 -> 13 (s3://…)`."""
    old = {(r.key, r.version): r for r in before.resolutions}
    lines = []
    for r in sorted(after.resolutions, key=lambda r: (r.key, r.version)):
        was = old.get((r.key, r.version))
        if was is None or (was.resolved.version, was.resolved.uri) != (r.resolved.version, r.resolved.uri):
            start = was.resolved.version if was is not None else "?"
            lines.append(f"{r.key} {r.version}: {r.ref} {start} -> {r.resolved.version} ({r.resolved.uri})")
    return lines


@dataclass
class RegistryFollower:
    """The registry ticks of one controller. `record(event, **fields)` writes the audit log."""

    interval: float  # seconds between ticks; 0: never
    record: Callable[..., None]
    sync_alias: str | None = None
    sync_as: SyncAs = "canary"
    sync_traffic: int = 10
    write_back: WriteBack | None = None
    details: dict[Any, Any] = field(default_factory=dict)  # agent.registry.DetailsCache, kept across ticks
    proposed: dict[tuple[str, str], str] = field(default_factory=dict)  # (model, version) -> branch
    last_error: str = ""
    checks: int = 0  # re-resolutions started, a sign for tests and logs that the ticks run
    looks: int = 0  # looks at the sync alias started (proposals checked), the same sign for `propose`

    def wanted(self, desired: Desired | None) -> bool:
        """Whether this commit needs registry ticks at all (no I/O for a repo without references)."""
        if self.interval <= 0 or desired is None:
            return False
        if has_moving_refs(desired.spec):
            return True
        return self.sync_alias is not None and any(
            (entry := m.versions.get(m.stable)) is not None and entry.registry is not None
            and entry.registry.version is not None for m in desired.spec.models)

    def registries(self, desired: Desired, repo: str | Path) -> dict[str, Any]:
        return registries_for(desired.spec, repo, mlflow_details=self.details)

    # --- re-resolve -------------------------------------------------------------------------
    def refresh(self, unresolved: Desired, current: Desired, repo: str | Path) -> Desired | None:
        """`unresolved` resolved afresh when a moving reference now resolves to another version
        than in `current` (audited); None when nothing moved. RegistryError propagates."""
        if not has_moving_refs(unresolved.spec):
            return None
        self.checks += 1
        fresh = resolve_registries(unresolved, repo, self.registries(unresolved, repo), unless_same_as=current)
        if fresh is current:
            return None
        lines = moved(current, fresh)
        log.info("registry: %s", "; ".join(lines))
        self.record("registry-moved", moved=lines)
        return fresh

    # --- propose ----------------------------------------------------------------------------
    def propose(self, unresolved: Desired, repo: Path) -> list[dict[str, Any]]:
        """Open a promotion PR for each model whose pinned stable version the sync alias no longer
        names (once per model and version in this process). The check is one registry lookup per
        pinned model on the followed commit's spec in memory; only a moved alias costs a clone and
        a plan. `repo` is the model repo (a registry's relative paths). Returns the audit fields
        of each proposal made; AgentError (registry, validation, git, forge) propagates."""
        if self.sync_alias is None:
            return []
        self.looks += 1
        registries = self.registries(unresolved, repo)
        pending: set[tuple[str, str]] = set()
        for model in unresolved.spec.models:
            target = moved_to(model, self.sync_alias, registries)
            if target is not None and (model.key, target) not in self.proposed:
                pending.add((model.key, target))
        if not pending:
            return []
        if self.write_back is None:
            raise AgentError("registry sync needs the followed Git remote (not --watch-dir) to propose "
                             + ", ".join(f"{key} -> {target}" for key, target in sorted(pending)))
        return self._publish(registries, pending)

    def _publish(self, registries: dict[str, Any], wanted: set[tuple[str, str]]) -> list[dict[str, Any]]:
        """Clone the followed branch afresh, plan again on its head (the file may have changed
        since the followed commit), and commit, push and open a PR for each wanted proposal."""
        wb = self.write_back
        assert wb is not None and self.sync_alias is not None
        token = wb.token()
        if token is None:
            raise AgentError("a registry sync pull request needs a token (--git-token-file or --git-token-env)")
        auth = GitAuth(token=token, username=wb.username, ca_file=wb.ca_file)
        work = Path(tempfile.mkdtemp(prefix="modelops-registry-sync-"))
        forge = None
        done: list[dict[str, Any]] = []
        try:
            root = work / "repo"
            clone_branch(wb.url, wb.branch, root, auth)
            path = root / wb.path if wb.path else root
            head = git_head(root)
            forge = open_forge(repo_ref(wb.url, wb.forge_kind, wb.forge_api_url), token, ca_file=wb.ca_file)
            for proposal in plan_sync(path, self.sync_alias, registries=registries, as_=self.sync_as,
                                      traffic=self.sync_traffic, revision=head):
                if proposal.up_to_date or (proposal.model, proposal.target) not in wanted:
                    continue
                target = PushPlan(remote="origin", url=wb.url, head=proposal.branch, base=wb.branch)
                published = publish(path, root, proposal, head, target, forge, auth)
                pr = published.pull_request
                fields = {"model": proposal.model, "alias": self.sync_alias, "from": proposal.current,
                          "to": proposal.target, "branch": proposal.branch, "pushed": published.commit,
                          "pull_request": pr.url if pr is not None else None}
                self.proposed[(proposal.model, proposal.target)] = proposal.branch
                log.info("registry sync: %s", fields)
                self.record("registry-proposal", **fields)
                done.append(fields)
        finally:
            if forge is not None:
                forge.close()
            shutil.rmtree(work, ignore_errors=True)
        return done
