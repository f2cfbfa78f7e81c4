"""One small interface over the GitHub, GitLab and Gitea REST APIs (PR-driven promotion, #10).

The agent opens a pull request for a promotion, keeps one status comment on it up to date,
merges it, and registers a push webhook. `repo_ref` turns the model repo's git remote into a
`RepoRef`; `open_forge` gives the `Forge` for it. Every call is idempotent where the forge
allows it (open_pull, upsert_comment, add_push_webhook), so a retried promotion does not pile
up PRs, comments or hooks. Standard library HTTP only; see docs/forges.md for tokens and URLs.
"""

from __future__ import annotations

from agent.forge._base import KINDS, STATUS_STATES, Comment, CommitStatus, Forge, PullRequest, RepoRef
from agent.forge._errors import ForgeError
from agent.forge._http import api_message
from agent.forge._open import open_forge
from agent.forge._remote import DEFAULT_TOKEN_ENV, read_token, repo_ref
from agent.forge._settings import (
    ForgeAccess,
    ForgeOptions,
    connect_forge,
    forge_options,
    from_settings,
    read_git_token,
    repo_url,
    username_for,
)

__all__ = [
    "DEFAULT_TOKEN_ENV",
    "KINDS",
    "STATUS_STATES",
    "Comment",
    "CommitStatus",
    "Forge",
    "ForgeError",
    "PullRequest",
    "RepoRef",
    "api_message",
    "open_forge",
    "read_token",
    "repo_ref",
]
__all__ += [  # set-up from settings (the CLI's flags, the controller's)
    "ForgeAccess", "ForgeOptions", "connect_forge", "forge_options", "from_settings", "read_git_token", "repo_url",
    "username_for",
]
