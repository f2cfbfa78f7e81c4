"""GitHub (github.com and GitHub Enterprise Server) over its REST API v3."""

from __future__ import annotations

import urllib.parse
from typing import Any

from agent.forge._base import (
    CommitStatus,
    ForgeBase,
    PullRequest,
    RawComment,
    RawHook,
    arr,
    i,
    obj,
    opt_s,
    s,
    status_from,
    status_request,
)
from agent.forge._errors import ForgeError

PER_PAGE = 100


def pull_from(d: dict[str, Any], created: bool = False) -> PullRequest:
    """A GitHub/Gitea pull object as a PullRequest; "closed" with a merge time is "merged"."""
    head, base = obj(d.get("head"), "pull.head"), obj(d.get("base"), "pull.base")
    state = s(d, "state")
    if d.get("merged") is True or d.get("merged_at"):
        state = "merged"
    elif state != "open":
        state = "closed"
    return PullRequest(
        number=i(d, "number"),
        url=s(d, "html_url"),
        head=s(head, "ref"),
        base=s(base, "ref"),
        title=s(d, "title", ""),
        body=s(d, "body", ""),
        state=state,
        merge_commit=opt_s(d, "merge_commit_sha") if state == "merged" else None,
        created=created,
    )


class GitHubForge(ForgeBase):
    kind = "github"

    @property
    def _r(self) -> str:
        return f"/repos/{urllib.parse.quote(self.repo.owner, safe='')}/{urllib.parse.quote(self.repo.name, safe='')}"

    def find_pull(self, head: str, base: str) -> PullRequest | None:
        """The open PR head->base; `head` is a branch of this repository (owner:branch for the API)."""
        q: dict[str, str | int] = {
            "state": "open",
            "head": f"{self.repo.owner}:{head}",
            "base": base,
            "per_page": PER_PAGE,
        }
        for d in self.http.paged(f"{self._r}/pulls", q):
            pr = pull_from(obj(d, "pull"))
            if pr.head == head and pr.base == base and pr.state == "open":
                return pr
        return None

    def get_pull(self, number: int) -> PullRequest:
        return pull_from(obj(self.http.json("GET", f"{self._r}/pulls/{number}"), "pull"))

    def _create_pull(self, head: str, base: str, title: str, body: str) -> PullRequest:
        d = self.http.json("POST", f"{self._r}/pulls", {"head": head, "base": base, "title": title, "body": body})
        return pull_from(obj(d, "pull"), created=True)

    def _update_pull(self, number: int, title: str, body: str) -> PullRequest:
        d = self.http.json("PATCH", f"{self._r}/pulls/{number}", {"title": title, "body": body})
        return pull_from(obj(d, "pull"))

    def _comments(self, number: int) -> list[RawComment]:
        items = self.http.paged(f"{self._r}/issues/{number}/comments", {"per_page": PER_PAGE})
        return [_comment(obj(c, "comment")) for c in items]

    def _create_comment(self, number: int, body: str) -> RawComment:
        return _comment(obj(self.http.json("POST", f"{self._r}/issues/{number}/comments", {"body": body}), "comment"))

    def _edit_comment(self, number: int, comment_id: int, body: str) -> RawComment:
        d = self.http.json("PATCH", f"{self._r}/issues/comments/{comment_id}", {"body": body})
        return _comment(obj(d, "comment"))

    def merge_pull(self, number: int, message: str | None = None) -> str:
        body: dict[str, str] = {"merge_method": "merge"}
        if message is not None:
            body["commit_message"] = message
        d = obj(self.http.json("PUT", f"{self._r}/pulls/{number}/merge", body), "merge")
        sha = opt_s(d, "sha")
        if d.get("merged") is False or sha is None:
            raise ForgeError(f"github: PUT {self._r}/pulls/{number}/merge: not merged: {d.get('message', '')}")
        return sha

    def _hooks(self) -> list[RawHook]:
        hooks = []
        for h in arr(self.http.paged(f"{self._r}/hooks", {"per_page": PER_PAGE}), "hooks"):
            d = obj(h, "hook")
            cfg = d.get("config")
            if isinstance(cfg, dict) and isinstance(cfg.get("url"), str):
                hooks.append(RawHook(i(d, "id"), cfg["url"]))
        return hooks

    def _hook_body(self, url: str, secret: str) -> dict[str, Any]:
        return {
            "active": True,
            "events": ["push"],
            "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"},
        }

    def _create_hook(self, url: str, secret: str) -> int:
        body = {"name": "web", **self._hook_body(url, secret)}
        return i(obj(self.http.json("POST", f"{self._r}/hooks", body), "hook"), "id")

    def _edit_hook(self, hook_id: int, url: str, secret: str) -> int:
        d = self.http.json("PATCH", f"{self._r}/hooks/{hook_id}", self._hook_body(url, secret))
        return i(obj(d, "hook"), "id")

    def set_status(self, sha: str, state: str, context: str, description: str, url: str = "") -> CommitStatus:
        """POST /repos/{owner}/{repo}/statuses/{sha} (Gitea: the same call)."""
        description, url = status_request(sha, state, context, description, url)
        body = {"state": state, "context": context, "description": description}
        if url:
            body["target_url"] = url
        d = obj(self.http.json("POST", f"{self._r}/statuses/{sha}", body), "status")
        got = d.get("state") if isinstance(d.get("state"), str) else d.get("status")  # Gitea names it status
        if got != state or s(d, "context") != context:
            raise ForgeError(f"{self.kind}: POST {self._r}/statuses/{sha[:12]}: the answer is not the status sent "
                             f"(state {str(got)[:20]!r}, context {s(d, 'context')[:80]!r})")
        return CommitStatus(sha, state, context, s(d, "description", ""), s(d, "target_url", ""))

    def get_status(self, sha: str, context: str) -> CommitStatus | None:
        """GET /repos/{owner}/{repo}/commits/{sha}/status: the combined status, newest per context."""
        status_request(sha, "pending", context, "", "")
        d = obj(self.http.json("GET", f"{self._r}/commits/{sha}/status"), "combined status")
        for item in arr(d.get("statuses") or [], "statuses"):
            found = status_from(sha, obj(item, "status"), "context")
            if found is not None and found.context == context:
                return found
        return None


def _comment(d: dict[str, Any]) -> RawComment:
    return RawComment(i(d, "id"), s(d, "body", ""), s(d, "html_url", ""))
