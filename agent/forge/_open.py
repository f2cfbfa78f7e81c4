"""The `Forge` client of a repository on GitHub, GitLab or Gitea."""

from __future__ import annotations

from pathlib import Path

from agent.forge._base import Forge, ForgeBase, RepoRef
from agent.forge._errors import ForgeError
from agent.forge._gitea import GiteaForge
from agent.forge._github import GitHubForge
from agent.forge._gitlab import GitLabForge
from agent.forge._http import HttpClient

_CLASSES: dict[str, type[ForgeBase]] = {"github": GitHubForge, "gitlab": GitLabForge, "gitea": GiteaForge}


def open_forge(ref: RepoRef, token: str, *, ca_file: str | Path | None = None, timeout: float = 20.0) -> Forge:
    """The `Forge` for `ref`, authenticated with `token` (sent only to `ref.api_url`)."""
    cls = _CLASSES.get(ref.kind)
    if cls is None:
        raise ForgeError(f"forge kind {ref.kind!r}: expected one of {', '.join(_CLASSES)}")
    if not token or token != token.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ForgeError(f"{ref.kind}: the token is empty or holds whitespace/control characters")
    if timeout <= 0:
        raise ForgeError(f"{ref.kind}: timeout must be positive, got {timeout}")
    extra: dict[str, str] = {}
    if ref.kind == "github":
        auth = ("Authorization", f"Bearer {token}")
        extra = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    elif ref.kind == "gitlab":
        auth = ("PRIVATE-TOKEN", token)
    else:
        auth = ("Authorization", f"token {token}")
    http = HttpClient(ref.kind, ref.api_url, auth, token, ca_file=ca_file, timeout=timeout, extra_headers=extra)
    return cls(ref, http)
