"""GitLab (gitlab.com and self-managed) over its REST API v4: merge requests, notes, project hooks."""

from __future__ import annotations

import urllib.parse
from typing import Any

from agent.forge._base import (
    Comment,
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
# "locked" is GitLab's transient state while a merge is being carried out: not merged yet.
_STATES = {"opened": "open", "locked": "open", "merged": "merged", "closed": "closed"}
# commit statuses: GitLab says "failed" where GitHub and Gitea say "failure"
_STATUS = {"pending": "pending", "success": "success", "failure": "failed"}


def mr_from(d: dict[str, Any], created: bool = False) -> PullRequest:
    state = _STATES.get(s(d, "state"), "closed")
    commit = None
    if state == "merged":
        # Fast-forward merges leave merge_commit_sha empty; the MR head then is what landed.
        commit = opt_s(d, "merge_commit_sha") or opt_s(d, "squash_commit_sha") or opt_s(d, "sha")
    return PullRequest(
        number=i(d, "iid"),
        url=s(d, "web_url"),
        head=s(d, "source_branch"),
        base=s(d, "target_branch"),
        title=s(d, "title", ""),
        body=s(d, "description", ""),
        state=state,
        merge_commit=commit,
        created=created,
    )


class GitLabForge(ForgeBase):
    kind = "gitlab"

    @property
    def _p(self) -> str:
        """The project path, URL-encoded whole ("group/sub/name" -> "group%2Fsub%2Fname")."""
        return "/projects/" + urllib.parse.quote(f"{self.repo.owner}/{self.repo.name}", safe="")

    def find_pull(self, head: str, base: str) -> PullRequest | None:
        q: dict[str, str | int] = {
            "state": "opened",
            "source_branch": head,
            "target_branch": base,
            "per_page": PER_PAGE,
        }
        for d in self.http.paged(f"{self._p}/merge_requests", q):
            pr = mr_from(obj(d, "merge request"))
            if pr.head == head and pr.base == base and pr.state == "open":
                return pr
        return None

    def get_pull(self, number: int) -> PullRequest:
        return mr_from(obj(self.http.json("GET", f"{self._p}/merge_requests/{number}"), "merge request"))

    def _create_pull(self, head: str, base: str, title: str, body: str) -> PullRequest:
        req = {"source_branch": head, "target_branch": base, "title": title, "description": body}
        return mr_from(obj(self.http.json("POST", f"{self._p}/merge_requests", req), "merge request"), created=True)

    def _update_pull(self, number: int, title: str, body: str) -> PullRequest:
        d = self.http.json("PUT", f"{self._p}/merge_requests/{number}", {"title": title, "description": body})
        return mr_from(obj(d, "merge request"))

    def _note_url(self, number: int, note_id: int) -> str:
        return f"{self.get_pull(number).url}#note_{note_id}"

    def _comments(self, number: int) -> list[RawComment]:
        q: dict[str, str | int] = {"sort": "asc", "order_by": "created_at", "per_page": PER_PAGE}
        notes = [obj(n, "note") for n in self.http.paged(f"{self._p}/merge_requests/{number}/notes", q)]
        # Notes carry no web URL; it is the MR's URL with an anchor, built only when one is returned.
        return [RawComment(i(n, "id"), s(n, "body", ""), "") for n in notes if n.get("system") is not True]

    def _create_comment(self, number: int, body: str) -> RawComment:
        n = obj(self.http.json("POST", f"{self._p}/merge_requests/{number}/notes", {"body": body}), "note")
        return RawComment(i(n, "id"), s(n, "body", ""), self._note_url(number, i(n, "id")))

    def _edit_comment(self, number: int, comment_id: int, body: str) -> RawComment:
        d = self.http.json("PUT", f"{self._p}/merge_requests/{number}/notes/{comment_id}", {"body": body})
        n = obj(d, "note")
        return RawComment(i(n, "id"), s(n, "body", ""), self._note_url(number, i(n, "id")))

    def upsert_comment(self, number: int, marker: str, body: str) -> Comment:
        c = super().upsert_comment(number, marker, body)
        if not c.url:  # unchanged comment: nothing was written, the URL is still wanted
            c = Comment(c.id, self._note_url(number, c.id), c.created)
        return c

    def merge_pull(self, number: int, message: str | None = None) -> str:
        body: dict[str, Any] = {}
        if message is not None:
            body["merge_commit_message"] = message
        path = f"{self._p}/merge_requests/{number}/merge"
        pr = mr_from(obj(self.http.json("PUT", path, body), "merge request"))
        if pr.state != "merged" or not pr.merge_commit:
            raise ForgeError(f"gitlab: PUT {path}: the merge request is {pr.state!r} without a merge commit")
        return pr.merge_commit

    def _hooks(self) -> list[RawHook]:
        out = []
        for h in self.http.paged(f"{self._p}/hooks", {"per_page": PER_PAGE}):
            d = obj(h, "hook")
            if isinstance(d.get("url"), str):
                out.append(RawHook(i(d, "id"), s(d, "url")))
        return out

    @staticmethod
    def _hook_body(url: str, secret: str) -> dict[str, Any]:
        return {
            "url": url,
            "token": secret,
            "push_events": True,
            "merge_requests_events": False,
            "enable_ssl_verification": True,
        }

    def _create_hook(self, url: str, secret: str) -> int:
        return i(obj(self.http.json("POST", f"{self._p}/hooks", self._hook_body(url, secret)), "hook"), "id")

    def _edit_hook(self, hook_id: int, url: str, secret: str) -> int:
        d = self.http.json("PUT", f"{self._p}/hooks/{hook_id}", self._hook_body(url, secret))
        return i(obj(d, "hook"), "id")

    def set_status(self, sha: str, state: str, context: str, description: str, url: str = "") -> CommitStatus:
        """POST /projects/{id}/statuses/{sha} (the status `name` is the context). Setting the
        state a status already has is refused by GitLab ("Cannot transition status"): the
        status is as asked, so that answer counts as done."""
        description, url = status_request(sha, state, context, description, url)
        body = {"state": _STATUS[state], "name": context, "description": description}
        if url:
            body["target_url"] = url
        path = f"{self._p}/statuses/{sha}"
        try:
            d = obj(self.http.json("POST", path, body), "status")
        except ForgeError as e:
            if e.status == 400 and "cannot transition status" in str(e).lower():
                return CommitStatus(sha, state, context, description, url)
            raise
        got = d.get("status")
        if got != _STATUS[state] or s(d, "name") != context:
            raise ForgeError(f"gitlab: POST {path}: the answer is not the status sent "
                             f"(status {str(got)[:20]!r}, name {s(d, 'name')[:80]!r})")
        return CommitStatus(sha, state, context, s(d, "description", ""), s(d, "target_url", ""))

    def get_status(self, sha: str, context: str) -> CommitStatus | None:
        """GET /projects/{id}/repository/commits/{sha}/statuses?name=...: the newest of that name."""
        status_request(sha, "pending", context, "", "")
        q: dict[str, str | int] = {"name": context, "per_page": PER_PAGE}
        items = arr(self.http.json("GET", f"{self._p}/repository/commits/{sha}/statuses", query=q), "statuses")
        newest = max((item for item in items if isinstance(item, dict) and isinstance(item.get("id"), int)),
                     key=lambda item: int(item["id"]), default=None)
        if newest is None:
            return None
        status = status_from(sha, newest, "name")
        return status if status is not None and status.context == context else None
