"""The promote -> push -> PR flow, as a library for the CLI, the demo and the controller alike:
the forge and git auth set up from settings before anything is written, the model's file
edited and committed (agent.promotion._local), the branch pushed and its PR opened or updated.
No printing: progress reaches the caller through a callback, the result is data."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.engine import offline_plan
from agent.errors import AgentError
from agent.forge import Forge, ForgeAccess, ForgeOptions, from_settings
from agent.plan import Plan
from agent.promotion._change import Change, PromoteError
from agent.promotion._local import Outcome, promote
from agent.promotion._pull import PullOutcome, pull_body, relabel, truncate
from agent.source import (
    GitAuth,
    PushPlan,
    base_commit,
    clone_branch,
    fetch_branch,
    git_toplevel,
    plan_push,
    push_branch,
    resolve_remote,
)


def connect(root: Path, remote: str, options: ForgeOptions, *, open_pr: bool) -> tuple[ForgeAccess, GitAuth]:
    """The forge (when a PR is to be opened on `remote`'s forge) and the git auth for pushing to
    `remote`, from settings (agent.forge.from_settings): the token and the forge first, so no
    commit is made without them."""
    access = from_settings(options, resolve_remote(root, remote) if open_pr else None)
    return access, GitAuth(token=access.token, username=access.username, ca_file=options.ca_file)


def branch_plan(path: str | Path, root: Path, target: PushPlan, auth: GitAuth, fallback: Plan) -> Plan:
    """The plan of the whole PR: the remote's base against the pushed branch, as a PR check
    would show it; the plan of this change alone when the base cannot be read."""
    try:
        base = base_commit(root, target, auth)
        if base is not None:
            return relabel(offline_plan(path, base, f"refs/heads/{target.head}"), target.base, target.head)
    except AgentError:
        pass
    return relabel(fallback, target.base, target.head)


def open_pull(forge: Forge, target: PushPlan, title: str, body: str) -> PullOutcome:
    """Open the PR head -> base, or update the open one (its title and body)."""
    existing = forge.find_pull(target.head, target.base)
    pr = forge.open_pull(target.head, target.base, title, body)
    created = bool(getattr(pr, "created", False)) and existing is None
    return PullOutcome(number=int(pr.number), url=str(pr.url), created=created, title=title, body=body)


def post_comment(number: int, body: str, marker: str, remote_url: str, options: ForgeOptions) -> tuple[bool, str]:
    """Keep one comment (per marker) on PR `number` with `body`: (created, its URL)."""
    if number <= 0:
        raise PromoteError(f"{number} is not a pull request number")
    if not marker or not re.fullmatch(r"[A-Za-z0-9_.:/-]+", marker):
        raise PromoteError(f"--marker {marker!r}: letters, digits and _.:/- only")
    access = from_settings(options, remote_url)
    try:
        assert access.forge is not None  # a remote URL given: a forge or an error
        comment = access.forge.upsert_comment(number, marker, truncate(body))
    finally:
        access.close()
    return bool(comment.created), str(comment.url)


@dataclass
class PromotionResult:
    """What promote_and_publish did: the edit (`outcome`), where it was to go (`target`, None
    without --push), whether it was `pushed`, the PR it would open in a dry run
    (`would_open`: title and body) and the PR opened or updated."""

    outcome: Outcome
    target: PushPlan | None = None
    pushed: bool = False
    would_open: tuple[str, str] | None = None
    pull_request: PullOutcome | None = None


PromotionStep = Literal["edited", "pushed"]
PromotionProgress = Callable[[PromotionStep, PromotionResult], None]


def promote_and_publish(path: str | Path, name: str, namespace: str | None, change: Change, *,
                        commit: bool = False, branch: str | None = None, dry_run: bool = False,
                        push: str | None = None, base: str | None = None, open_pr: bool = False,
                        options: ForgeOptions | None = None, progress: PromotionProgress | None = None,
                        environment: str | None = None, message: str | None = None) -> PromotionResult:
    """`agent promote`: edit the model's file (committed when pushing), then push the branch to
    remote `push` (`open_pr` alone: origin) and open or update its PR. The forge, the token and
    the push target are worked out before anything is written. In a dry run nothing is written
    and git is not touched beyond reading the remote; the PR it would open is in the result.
    `progress(step, result)`: "edited" once the edit is known (committed unless a dry run),
    "pushed" once the branch is on the remote (the PR still to open). `environment`, `message`:
    as agent.promotion.promote (the environment's overlay edited; the commit message)."""
    tell: PromotionProgress = progress or (lambda step, result: None)
    options = options or ForgeOptions()
    if open_pr and push is None:
        push = "origin"
    target: PushPlan | None = None
    access = ForgeAccess(forge=None, token=None, username="x-access-token")
    auth = GitAuth(ca_file=options.ca_file)
    try:
        if push is not None:
            root = git_toplevel(Path(path))
            access, auth = connect(root, push, options, open_pr=open_pr and not dry_run)
            target = plan_push(root, push, branch, base, auth)
        outcome = promote(path, name, namespace, change, commit=commit or target is not None, branch=branch,
                          dry_run=dry_run, environment=environment, message=message)
        result = PromotionResult(outcome=outcome, target=target)
        tell("edited", result)
        if target is not None:
            _publish(path, result, target, access.forge if open_pr else None, auth, dry_run=dry_run,
                     open_pr=open_pr, tell=tell)
        return result
    finally:
        access.close()


def _publish(path: str | Path, result: PromotionResult, target: PushPlan, forge: Forge | None, auth: GitAuth, *,
             dry_run: bool, open_pr: bool, tell: PromotionProgress) -> None:
    outcome = result.outcome
    title = outcome.message.splitlines()[0]
    if dry_run:
        if open_pr:
            result.would_open = (title, pull_body(relabel(outcome.plan, target.base, target.head), outcome.message))
        return
    root = git_toplevel(Path(path))
    try:
        push_branch(root, target, auth)
    except AgentError as exc:
        kept = f" (the commit stays on {target.head} here: run the same command again to push it)" if (
            outcome.commit) else ""
        raise AgentError(f"{exc}{kept}") from exc
    result.pushed = True
    tell("pushed", result)
    if forge is None:
        return
    body = pull_body(branch_plan(path, root, target, auth, outcome.plan), outcome.message)
    result.pull_request = open_pull(forge, target, title, body)


# --- the controller's write-back: a promotion made on a fresh clone of the remote ------------------

@dataclass(frozen=True)
class Published:
    """What publish_remote did: the commit pushed (None: Git already said so) and the PR."""

    commit: str | None
    pull_request: PullOutcome | None = None


def publish_remote(url: str, base: str, subdir: str, name: str, namespace: str, change: Change, *, auth: GitAuth,
                   work: Path, head: str | None = None, forge: Forge | None = None,
                   author: tuple[str, str] = ("modelops-agent", "modelops-agent@modelops.invalid"),
                   environment: str | None = None, message: str | None = None) -> Published:
    """Make `change` on a fresh clone of url@base and push it: straight to `base` (head None: a
    commit on the branch the controller follows, so Git stays the truth about what serves), or
    to branch `head` with a PR into base when a forge is given. `work` must not exist yet; the
    caller removes it. The same validation as `agent promote`: an edit that fails it is refused.
    `environment`: that Environment's overlay of the model is edited instead of the Model (the
    fleet's rollouts, promotions between environments), and a branch `head` the remote has
    already is taken as it is (found again: no second commit; its PR updated); `message`: the
    commit message (agent.promotion.promote)."""
    clone_branch(url, base, work, auth, author=author)
    target = PushPlan(remote="origin", url=url, head=head or base, base=base)
    found = environment is not None and head is not None and fetch_branch(work, target, auth)
    outcome = promote(work / subdir if subdir else work, name, namespace, change, commit=True, branch=head,
                      environment=environment, message=message)
    if outcome.after != outcome.before:
        push_branch(work, target, auth)
    elif not (found and forge is not None):
        return Published(commit=None)
    pr = None
    if forge is not None and head is not None:
        title = outcome.message.splitlines()[0]
        pr = open_pull(forge, target, title, pull_body(relabel(outcome.plan, base, head), outcome.message))
    return Published(commit=outcome.commit if outcome.after != outcome.before else None, pull_request=pr)
