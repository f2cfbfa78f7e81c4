"""Shim: the names cli.py, the controller and older tests import from agent.promote,
now in agent.promotion (the edits and flows), agent.source (git) and agent.forge (forge, auth).
Remove once every caller imports them from there."""

from __future__ import annotations

from pathlib import Path

from agent.forge import ForgeOptions, connect_forge, forge_options, read_git_token, repo_url, username_for
from agent.promotion import (
    PR_BODY_LIMIT,
    Change,
    NewVersion,
    Outcome,
    PromoteError,
    Published,
    PullOutcome,
    add_version_entry,
    branch_plan,
    describe,
    document_at,
    edit_model_document,
    open_pull,
    post_comment,
    promote,
    publish_remote,
    pull_body,
    relabel,
    trailers,
    truncate,
)
from agent.source import (
    GitAuth,
    GitError,
    PushPlan,
    clone_branch,
    git_auth,
    git_toplevel,
    plan_push,
    resolve_remote,
)
from agent.source import git_head as _git_head
from agent.source import push_branch as push
from agent.source import redact_url as shown_url

__all__ = [
    "PR_BODY_LIMIT",
    "Change",
    "ForgeOptions",
    "GitAuth",
    "NewVersion",
    "Outcome",
    "PromoteError",
    "Published",
    "PullOutcome",
    "PushPlan",
    "add_version_entry",
    "branch_plan",
    "clone_branch",
    "connect_forge",
    "describe",
    "document_at",
    "edit_model_document",
    "forge_options",
    "git_auth",
    "git_head",
    "git_toplevel",
    "open_pull",
    "plan_push",
    "post_comment",
    "promote",
    "publish_remote",
    "pull_body",
    "push",
    "read_git_token",
    "relabel",
    "repo_url",
    "resolve_remote",
    "shown_url",
    "trailers",
    "truncate",
    "username_for",
]


def git_head(root: Path) -> str:
    """agent.source.git_head, its failure a PromoteError as cli._registry_sync_head expects."""
    try:
        return _git_head(root)
    except GitError as exc:
        raise PromoteError(str(exc)) from exc
