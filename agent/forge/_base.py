"""The forge-neutral types and the logic every forge shares (idempotent PRs, comments, hooks).

Each forge module supplies only the REST primitives (list, create, edit); the idempotency rules
live here once, so GitHub, GitLab and Gitea cannot drift apart on what "upsert" means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.forge._errors import ForgeError
from agent.forge._http import HttpClient


@dataclass(frozen=True)
class PullRequest:
    """A pull request (GitLab: merge request) as the agent needs it."""

    number: int  # GitHub/Gitea number, GitLab iid
    url: str  # web (html) URL
    head: str  # source branch name
    base: str  # target branch name
    title: str
    body: str
    state: str  # "open", "closed" or "merged"
    merge_commit: str | None = None
    created: bool = False  # True when this call opened it (False: found / updated)


@dataclass(frozen=True)
class Comment:
    """A PR comment written by `upsert_comment`."""

    id: int
    url: str
    created: bool  # False: an existing comment was edited in place


@dataclass(frozen=True)
class RepoRef:
    """Where a repository lives: forge kind, API root, owner (GitLab: namespace path) and name."""

    kind: str  # "github" | "gitlab" | "gitea"
    api_url: str
    owner: str
    name: str


@dataclass(frozen=True)
class CommitStatus:
    """A commit status as the forge stored it (GitHub/Gitea: a status, GitLab: a pipeline job
    status), in the forge-neutral states pending, success, failure."""

    sha: str
    state: str
    context: str
    description: str
    url: str


STATUS_STATES = ("pending", "success", "failure")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_CONTEXT = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")  # one printable word (a kube context may hold @)
DESCRIPTION_LIMIT = 140


_STATE_OF = {"pending": "pending", "success": "success", "failure": "failure", "error": "failure",
             "warning": "failure", "failed": "failure", "canceled": "failure", "running": "pending",
             "created": "pending", "waiting_for_resource": "pending", "preparing": "pending",
             "scheduled": "pending", "manual": "pending", "skipped": "success"}


def status_from(sha: str, d: Mapping[str, Any], context_key: str) -> CommitStatus | None:
    """A status of a forge's answer (GitHub/Gitea `context`, GitLab `name`; GitHub `state`,
    Gitea and GitLab `status`); None when it does not read as one."""
    state = d.get("state") if isinstance(d.get("state"), str) else d.get("status")
    context = d.get(context_key)
    if not isinstance(state, str) or state not in _STATE_OF or not isinstance(context, str):
        return None
    description, url = d.get("description"), d.get("target_url")
    return CommitStatus(sha, _STATE_OF[state], context, description if isinstance(description, str) else "",
                        url if isinstance(url, str) else "")


def status_request(sha: str, state: str, context: str, description: str, url: str) -> tuple[str, str]:
    """The checked (description, url) of a status to set: sha a full commit id, state one of
    STATUS_STATES, context a plain name; the description made one line of at most 140
    characters, the url an http(s) URL or ""."""
    if not _SHA.fullmatch(sha):
        raise ForgeError(f"commit status: {sha[:80]!r} is not a full commit id")
    if state not in STATUS_STATES:
        raise ForgeError(f"commit status: state {state!r} is not one of {', '.join(STATUS_STATES)}")
    if not _CONTEXT.fullmatch(context):
        raise ForgeError(f"commit status: context {context[:80]!r}: expected 1-255 printable characters, no spaces")
    line = " ".join(description.split())
    if len(line) > DESCRIPTION_LIMIT:
        line = line[: DESCRIPTION_LIMIT - 1] + "…"
    if url and (not re.match(r"https?://[^\s/]+", url) or any(c.isspace() for c in url)):
        raise ForgeError("commit status: the link is not an http(s) URL")
    return line, url


class Forge(Protocol):
    """What the agent does on a forge: PRs, one comment per marker, merges, a push webhook,
    commit statuses."""

    kind: str
    repo: RepoRef

    def find_pull(self, head: str, base: str) -> PullRequest | None: ...
    def open_pull(self, head: str, base: str, title: str, body: str) -> PullRequest: ...
    def get_pull(self, number: int) -> PullRequest: ...
    def upsert_comment(self, number: int, marker: str, body: str) -> Comment: ...
    def merge_pull(self, number: int, message: str | None = None) -> str: ...
    def add_push_webhook(self, url: str, secret: str) -> int: ...
    def set_status(self, sha: str, state: str, context: str, description: str, url: str = "") -> CommitStatus: ...
    def get_status(self, sha: str, context: str) -> CommitStatus | None: ...
    def close(self) -> None: ...


KINDS = ("github", "gitlab", "gitea")

_MARKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")


def marker_line(marker: str) -> str:
    """The hidden first line that identifies the agent's comment for `marker`.

    Markers are restricted to a plain charset so that no marker can close the HTML comment
    or match another marker's line by prefix.
    """
    if not _MARKER.fullmatch(marker):
        raise ForgeError(f"comment marker {marker!r}: use 1-100 of letters, digits and ._:/- (starting alphanumeric)")
    return f"<!-- agent:{marker} -->"


def carries_marker(body: str, line: str) -> bool:
    """Whether a stored comment body starts with the marker line (forges may turn \\n into \\r\\n)."""
    return body.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r").strip() == line


# --- JSON extraction: the forges' answers are checked at this boundary, not trusted -----------


def obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ForgeError(f"unexpected API answer for {what}: expected an object, got {type(value).__name__}")
    return value


def arr(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ForgeError(f"unexpected API answer for {what}: expected a list, got {type(value).__name__}")
    return value


def s(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key)
    if isinstance(v, str):
        return v
    if v is None and default is not None:
        return default
    raise ForgeError(f"unexpected API answer: field {key!r} is {type(v).__name__}, expected a string")


def opt_s(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) and v else None


def i(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ForgeError(f"unexpected API answer: field {key!r} is {type(v).__name__}, expected an integer")


@dataclass(frozen=True)
class RawComment:
    id: int
    body: str
    url: str


@dataclass(frozen=True)
class RawHook:
    id: int
    url: str


class ForgeBase:
    """Shared behaviour over per-forge primitives (the `_` methods the subclasses implement)."""

    kind: str = ""

    def __init__(self, repo: RepoRef, http: HttpClient) -> None:
        self.repo = repo
        self.http = http

    def __repr__(self) -> str:  # the token lives in self.http and never shows here
        return f"{type(self).__name__}({self.repo.api_url!r}, {self.repo.owner}/{self.repo.name})"

    def close(self) -> None:
        """Nothing is pooled (one connection per request); kept so callers can always close."""

    # -- primitives ---------------------------------------------------------------------------
    def find_pull(self, head: str, base: str) -> PullRequest | None:
        raise NotImplementedError

    def get_pull(self, number: int) -> PullRequest:
        raise NotImplementedError

    def merge_pull(self, number: int, message: str | None = None) -> str:
        raise NotImplementedError

    def _create_pull(self, head: str, base: str, title: str, body: str) -> PullRequest:
        raise NotImplementedError

    def _update_pull(self, number: int, title: str, body: str) -> PullRequest:
        raise NotImplementedError

    def _comments(self, number: int) -> list[RawComment]:
        raise NotImplementedError

    def _create_comment(self, number: int, body: str) -> RawComment:
        raise NotImplementedError

    def _edit_comment(self, number: int, comment_id: int, body: str) -> RawComment:
        raise NotImplementedError

    def _hooks(self) -> list[RawHook]:
        raise NotImplementedError

    def _create_hook(self, url: str, secret: str) -> int:
        raise NotImplementedError

    def _edit_hook(self, hook_id: int, url: str, secret: str) -> int:
        raise NotImplementedError

    def set_status(self, sha: str, state: str, context: str, description: str, url: str = "") -> CommitStatus:
        """Set the status `context` of commit `sha` (pending, success or failure), with a one-line
        `description` and a link; the forge's answer is checked."""
        raise NotImplementedError

    def get_status(self, sha: str, context: str) -> CommitStatus | None:
        """The newest status `context` of commit `sha` (None: none set), its state one of
        STATUS_STATES (a forge's other states read as the nearest: running is pending,
        error and canceled are failure)."""
        raise NotImplementedError

    # -- shared rules -------------------------------------------------------------------------
    def open_pull(self, head: str, base: str, title: str, body: str) -> PullRequest:
        """The open PR head->base with this title/body: found and updated, or created."""
        existing = self.find_pull(head, base)
        if existing is None:
            try:
                return self._create_pull(head, base, title, body)
            except ForgeError as e:
                # Another writer opened it between our look-up and our create (422/409): use theirs.
                if e.status not in (409, 422):
                    raise
                existing = self.find_pull(head, base)
                if existing is None:
                    raise
        if existing.title != title or existing.body != body:
            return self._update_pull(existing.number, title, body)
        return existing

    def upsert_comment(self, number: int, marker: str, body: str) -> Comment:
        """One comment per (PR, marker): edited in place when one carries the marker, else posted."""
        line = marker_line(marker)
        full = f"{line}\n{body}"
        for c in self._comments(number):
            if carries_marker(c.body, line):
                if c.body.replace("\r\n", "\n") == full:
                    return Comment(c.id, c.url, created=False)
                edited = self._edit_comment(number, c.id, full)
                return Comment(edited.id, edited.url, created=False)
        made = self._create_comment(number, full)
        return Comment(made.id, made.url, created=True)

    def add_push_webhook(self, url: str, secret: str) -> int:
        """A push webhook to `url` with `secret`: the existing hook for that url is updated, else one is made."""
        for h in self._hooks():
            if h.url == url:
                return self._edit_hook(h.id, url, secret)
        return self._create_hook(url, secret)
