"""Gitea (v1.26) over its REST API v1: GitHub's shapes, with Gitea's own list, merge and hook calls."""

from __future__ import annotations

import time
from typing import Any

from agent.forge._base import PullRequest, RawComment, RawHook, i, obj
from agent.forge._errors import ForgeError
from agent.forge._github import GitHubForge, pull_from

LIMIT = 50  # Gitea's default MAX_RESPONSE_ITEMS: asking for more is silently cut to it
MERGE_WAIT = 15.0  # seconds to wait for an accepted merge to show on the pull
MERGE_POLL = 0.25


class GiteaForge(GitHubForge):
    kind = "gitea"
    merge_wait = MERGE_WAIT

    def find_pull(self, head: str, base: str) -> PullRequest | None:
        """Gitea's list filters neither head nor base: every open pull is read, all pages."""
        for d in self.http.paged(f"{self._r}/pulls", {"state": "open", "limit": LIMIT}):
            pr = pull_from(obj(d, "pull"))
            if pr.head == head and pr.base == base and pr.state == "open":
                return pr
        return None

    def _comments(self, number: int) -> list[RawComment]:
        items = self.http.paged(f"{self._r}/issues/{number}/comments", {"limit": LIMIT})
        return [_comment(obj(c, "comment")) for c in items]

    def merge_pull(self, number: int, message: str | None = None) -> str:
        """Merge, then read the merge commit off the pull: Gitea answers the merge with no body,
        and may finish it asynchronously, so the pull is polled briefly until it says merged."""
        body: dict[str, Any] = {"Do": "merge"}
        if message is not None:
            body["MergeMessageField"] = message
        path = f"{self._r}/pulls/{number}/merge"
        self.http.call("POST", path, body)
        deadline = time.monotonic() + self.merge_wait
        while True:
            pr = self.get_pull(number)
            if pr.state == "merged" and pr.merge_commit:
                return pr.merge_commit
            if time.monotonic() >= deadline:
                raise ForgeError(
                    f"gitea: POST {path}: accepted, but the pull is still {pr.state!r} "
                    f"without a merge commit after {self.merge_wait:g}s"
                )
            time.sleep(MERGE_POLL)

    def _hooks(self) -> list[RawHook]:
        hooks = []
        for h in self.http.paged(f"{self._r}/hooks", {"limit": LIMIT}):
            d = obj(h, "hook")
            cfg = d.get("config")
            if isinstance(cfg, dict) and isinstance(cfg.get("url"), str):
                hooks.append(RawHook(i(d, "id"), cfg["url"]))
        return hooks

    def _hook_body(self, url: str, secret: str) -> dict[str, Any]:
        return {
            "config": {"url": url, "content_type": "json", "secret": secret},
            "events": ["push"],
            "active": True,
        }

    def _create_hook(self, url: str, secret: str) -> int:
        body = {"type": "gitea", **self._hook_body(url, secret)}
        return i(obj(self.http.json("POST", f"{self._r}/hooks", body), "hook"), "id")


def _comment(d: dict[str, Any]) -> RawComment:
    body = d.get("body")
    url = d.get("html_url")
    return RawComment(i(d, "id"), body if isinstance(body, str) else "", url if isinstance(url, str) else "")
