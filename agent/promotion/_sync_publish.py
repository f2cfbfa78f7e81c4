"""`agent registry sync`'s publishing half and the whole flow as a library: each proposal
committed on its branch with a temporary index (the work tree untouched), pushed, and its PR
opened or updated. No printing: progress through a callback, the result is data."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import AgentError
from agent.forge import Forge, ForgeAccess, ForgeOptions
from agent.promotion._publish import branch_plan, connect, open_pull
from agent.promotion._pull import PullOutcome, pull_body, relabel
from agent.promotion._sync_plan import As, Proposal, SyncError, plan_sync
from agent.source import (
    GitAuth,
    GitError,
    PushPlan,
    branch_file,
    commit_on_branch,
    fetch_branch,
    git_head,
    git_toplevel,
    plan_push,
    push_branch,
)


@dataclass
class ProposalPublished:
    """What publishing one proposal did: `commit` made on the branch (None: the branch held this
    change already), `pushed` to the remote, and the PR opened or updated (None: no forge)."""

    branch: str
    commit: str | None
    pushed: bool = False
    pull_request: PullOutcome | None = None


def publish(path: str | Path, root: Path, proposal: Proposal, head: str, target: PushPlan | None,
            forge: Forge | None, auth: GitAuth) -> ProposalPublished:
    """Commit `proposal` on its branch (from `head`, with a temporary index: the work tree is
    untouched), push it to `target` (None: commit only) and open or update its PR on `forge`
    (None: none). Idempotent: a branch (here or, fetched first, on the remote) holding this
    change gets no new commit; one holding another version of the file is a SyncError. `path`
    is the model repo inside the git repo `root`."""
    repo_path = (Path(path).resolve() / proposal.file).relative_to(root.resolve()).as_posix()
    if target is not None:
        fetch_branch(root, target, auth)
    existing = branch_file(root, proposal.branch, repo_path)
    commit = None
    if existing is None:
        commit = commit_on_branch(root, proposal.branch, head, repo_path, proposal.after.encode("utf-8"),
                                  proposal.message)
    elif existing.decode("utf-8") != proposal.after:
        raise SyncError(f"branch {proposal.branch} exists with another version of {repo_path}: delete the branch "
                        "(here and on the remote) to propose again")
    published = ProposalPublished(branch=proposal.branch, commit=commit)
    if target is None:
        return published
    push_branch(root, target, auth)
    published.pushed = True
    if forge is not None:
        assert proposal.plan is not None
        title = proposal.message.splitlines()[0]
        body = pull_body(branch_plan(path, root, target, auth, relabel(proposal.plan, target.base, target.head)),
                         proposal.message).replace("`agent promote --open-pr`", "`agent registry sync --open-pr`")
        published.pull_request = open_pull(forge, target, title, body)
    return published


def sync_head(root: Path) -> str:
    """The commit registry sync builds on: HEAD, or an error saying so."""
    try:
        return git_head(root)
    except GitError as exc:
        raise AgentError(f"{exc}: registry sync commits on top of HEAD") from exc


@dataclass
class SyncItem:
    """One proposal of a registry sync: where it goes (`target`, None without --push or up to
    date) and what publishing it did (None: up to date, or a dry run)."""

    proposal: Proposal
    target: PushPlan | None = None
    published: ProposalPublished | None = None


@dataclass
class RegistrySyncResult:
    alias: str
    head: str
    items: list[SyncItem] = field(default_factory=list)


SyncStep = Literal["planned", "published"]
SyncProgress = Callable[[SyncStep, SyncItem], None]


def registry_sync(path: str | Path, alias: str, *, names: Sequence[str] = (), namespace: str | None = None,
                  as_: As = "canary", traffic: int = 10, prefix: str = "registry/", push: str | None = None,
                  base: str | None = None, open_pr: bool = False, dry_run: bool = False,
                  options: ForgeOptions | None = None, registries: Mapping[str, Any] | None = None,
                  progress: SyncProgress | None = None) -> RegistrySyncResult:
    """`agent registry sync`: plan a proposal per model whose pinned stable version `alias` no
    longer names (agent.promotion.plan_sync, on HEAD), then (unless a dry run) commit each on its
    branch, push it to remote `push` (`open_pr` alone: origin) and open or update its PR. The
    forge, the token and every push target are worked out before the first commit.
    `progress(step, item)`: "planned" before an item is published (every item, up to date ones
    too), "published" after (not for up-to-date items nor in a dry run)."""
    tell: SyncProgress = progress or (lambda step, item: None)
    options = options or ForgeOptions()
    if open_pr and push is None:
        push = "origin"
    root = git_toplevel(Path(path))
    access = ForgeAccess(forge=None, token=None, username="x-access-token")
    auth = GitAuth(ca_file=options.ca_file)
    try:
        if push is not None and not dry_run:
            access, auth = connect(root, push, options, open_pr=open_pr)
        head = sync_head(root)
        proposals = plan_sync(path, alias, registries=registries, names=names, namespace=namespace, as_=as_,
                              traffic=traffic, prefix=prefix, revision=head)
        result = RegistrySyncResult(alias=alias, head=head)
        targets = {p.model: plan_push(root, push, p.branch, base, auth)
                   for p in proposals if push is not None and not p.up_to_date}
        for proposal in proposals:
            item = SyncItem(proposal=proposal, target=targets.get(proposal.model))
            result.items.append(item)
            tell("planned", item)
            if proposal.up_to_date or dry_run:
                continue
            item.published = publish(path, root, proposal, head, item.target, access.forge, auth)
            tell("published", item)
        return result
    finally:
        access.close()
