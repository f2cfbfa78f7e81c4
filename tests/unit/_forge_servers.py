"""In-memory fakes of the GitHub, GitLab and Gitea REST endpoints agent.forge calls.

Contract fakes, not emulators: each implements just the request shapes the agent sends (paths,
query parameters, JSON fields, auth header, pagination headers) with the answer shapes the real
APIs document, keeps state in memory and records every request so tests can assert what was
sent. A deliberately small page size makes pagination happen with a handful of items.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
TOKEN = "s3cr3t-token-XYZ"


@dataclass
class Req:
    method: str
    path: str  # raw (still URL-encoded), without the API prefix and the query
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: Any


@dataclass
class State:
    pulls: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 100
    pending_merge: dict[int, int] = field(default_factory=dict)  # Gitea: GETs before a merge shows


class FakeForge:
    """A fake forge of `kind` on 127.0.0.1 (optionally TLS); owner/name is the one repository."""

    def __init__(
        self,
        kind: str,
        owner: str = "acme",
        name: str = "models",
        page_size: int = 2,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.kind = kind
        self.owner = owner
        self.name = name
        self.page_size = page_size
        self.state = State()
        self.requests: list[Req] = []
        self.fail: dict[tuple[str, str], list[int]] = {}  # (method, path) -> statuses to answer first
        self.merge_delay_gets = 2  # Gitea: the merge shows after this many GETs of the pull
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.origin = f"{scheme}://127.0.0.1:{self.port}"
        self.api_url = self.origin + PREFIX[kind]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- helpers for tests --------------------------------------------------------------------
    def new_id(self) -> int:
        self.state.next_id += 1
        return self.state.next_id

    def web(self, number: int) -> str:
        kind = "merge_requests" if self.kind == "gitlab" else "pull"
        return f"{self.origin}/{self.owner}/{self.name}/-/{kind}/{number}"

    def add_comment(self, number: int, body: str, system: bool = False) -> int:
        cid = self.new_id()
        c: dict[str, Any] = {"id": cid, "body": body}
        if self.kind == "gitlab":
            c["system"] = system
        else:
            c["html_url"] = f"{self.web(number)}#issuecomment-{cid}"
        self.state.comments.setdefault(number, []).append(c)
        return cid

    def writes(self) -> list[Req]:
        return [r for r in self.requests if r.method != "GET"]

    # -- request handling ---------------------------------------------------------------------
    def _auth_ok(self, h: BaseHTTPRequestHandler) -> tuple[bool, str]:
        if self.kind == "github":
            got, want = h.headers.get("Authorization", ""), f"Bearer {TOKEN}"
        elif self.kind == "gitlab":
            got, want = h.headers.get("PRIVATE-TOKEN", ""), TOKEN
        else:
            got, want = h.headers.get("Authorization", ""), f"token {TOKEN}"
        return got == want, got

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = split.path.removeprefix(PREFIX[self.kind])
        query = dict(urllib.parse.parse_qsl(split.query))
        with self.lock:
            self.requests.append(Req(h.command, path, query, {k.lower(): v for k, v in h.headers.items()}, body))
            statuses = self.fail.get((h.command, path))
            if statuses:
                status = statuses.pop(0)
                return self._send(h, status, {"message": f"injected {status}"})
            ok, got = self._auth_ok(h)
            if not ok:  # echo the credential, as a careless proxy might: the client must scrub it
                return self._send(h, 401, {"message": f"Bad credentials: {got}"})
            if h.headers.get("User-Agent") != "modelops-agent":
                return self._send(h, 400, {"message": "no user agent"})
            try:
                status, doc, headers = self._route(h.command, path, query, body)
            except LookupError:
                status, doc, headers = 404, {"message": self._not_found()}, {}
        self._send(h, status, doc, headers)

    def _not_found(self) -> str:
        return {"github": "Not Found", "gitlab": "404 Not found", "gitea": "The target couldn't be found."}[self.kind]

    def _send(self, h: BaseHTTPRequestHandler, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if doc is None else json.dumps(doc).encode()
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if data:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[int, Any, dict[str, str]]:
        page = int(query.get("page", "1"))
        start = (page - 1) * self.page_size
        chunk = items[start : start + self.page_size]
        headers: dict[str, str] = {}
        if start + self.page_size < len(items):
            if self.kind == "gitlab":
                headers["X-Next-Page"] = str(page + 1)
            else:
                q = urllib.parse.urlencode({**query, "page": str(page + 1)})
                headers["Link"] = f'<{self.api_url}{path}?{q}>; rel="next", <{self.api_url}{path}?page=99>; rel="last"'
        elif self.kind == "gitlab":
            headers["X-Next-Page"] = ""
        return 200, chunk, headers

    def _route(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        if self.kind == "gitlab":
            return self._gitlab(method, path, q, body)
        return self._github(method, path, q, body)

    # GitHub and Gitea share paths; they differ in list filters, merge and hooks.
    def _gh_pull(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "number": p["number"],
            "html_url": self.web(p["number"]),
            "state": "closed" if p["merged"] else p["state"],
            "title": p["title"],
            "body": p["body"],
            "head": {"ref": p["head"], "label": f"{self.owner}:{p['head']}"},
            "base": {"ref": p["base"]},
            "merged": p["merged"],
            "merged_at": "2026-01-01T00:00:00Z" if p["merged"] else None,
            "merge_commit_sha": p.get("sha"),
        }

    def _find(self, number: int) -> dict[str, Any]:
        for p in self.state.pulls:
            if p["number"] == number:
                return p
        raise LookupError(number)

    def _github(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        repo = f"/repos/{self.owner}/{self.name}"
        if not path.startswith(repo):
            raise LookupError(path)
        rest = path[len(repo) :]
        gitea = self.kind == "gitea"
        if rest == "/pulls" and method == "GET":
            pulls = [p for p in self.state.pulls if p["state"] == q.get("state", "open") and not p["merged"]]
            if not gitea:  # GitHub filters server-side by owner:branch and base
                if "head" in q:
                    pulls = [p for p in pulls if f"{self.owner}:{p['head']}" == q["head"]]
                if "base" in q:
                    pulls = [p for p in pulls if p["base"] == q["base"]]
            return self._page(path, q, [self._gh_pull(p) for p in pulls])
        if rest == "/pulls" and method == "POST":
            for p in self.state.pulls:
                if p["head"] == body["head"] and p["base"] == body["base"] and p["state"] == "open":
                    if gitea:
                        return 409, {"message": "pull request already exists for these targets"}, {}
                    return (
                        422,
                        {"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]},
                        {},
                    )
            number = self.new_id()
            p = {"number": number, "state": "open", "merged": False, **body}
            self.state.pulls.append(p)
            return 201, self._gh_pull(p), {}
        m = re.fullmatch(r"/pulls/(\d+)", rest)
        if m:
            p = self._find(int(m.group(1)))
            if method == "PATCH":
                p.update({k: body[k] for k in ("title", "body") if k in body})
            elif gitea and p["number"] in self.state.pending_merge:
                left = self.state.pending_merge[p["number"]] - 1
                if left <= 0:
                    del self.state.pending_merge[p["number"]]
                    p["merged"], p["sha"] = True, f"{p['number']:040x}"
                else:
                    self.state.pending_merge[p["number"]] = left
            return 200, self._gh_pull(p), {}
        m = re.fullmatch(r"/pulls/(\d+)/merge", rest)
        if m:
            p = self._find(int(m.group(1)))
            if gitea and method == "POST":
                if body.get("Do") != "merge":
                    return 422, {"message": "[Do]: Required"}, {}
                p["message"] = body.get("MergeMessageField")
                self.state.pending_merge[p["number"]] = self.merge_delay_gets
                return 200, None, {}
            if not gitea and method == "PUT":
                p["merged"], p["sha"], p["message"] = True, f"{p['number']:040x}", body.get("commit_message")
                return 200, {"sha": p["sha"], "merged": True, "message": "Pull Request successfully merged"}, {}
            return 405, {"message": "method not allowed"}, {}
        m = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if m:
            number = int(m.group(1))
            self._find(number)
            if method == "POST":
                self.add_comment(number, body["body"])
                return 201, self.state.comments[number][-1], {}
            return self._page(path, q, self.state.comments.get(number, []))
        m = re.fullmatch(r"/issues/comments/(\d+)", rest)
        if m and method == "PATCH":
            for cs in self.state.comments.values():
                for c in cs:
                    if c["id"] == int(m.group(1)):
                        c["body"] = body["body"]
                        return 200, c, {}
            raise LookupError(rest)
        if rest == "/hooks":
            if method == "POST":
                if gitea and body.get("type") != "gitea":
                    return 422, {"message": "Invalid hook type"}, {}
                hook = {"id": self.new_id(), **body}
                self.state.hooks.append(hook)
                return 201, hook, {}
            return self._page(path, q, self.state.hooks)
        m = re.fullmatch(r"/hooks/(\d+)", rest)
        if m and method == "PATCH":
            for hook in self.state.hooks:
                if hook["id"] == int(m.group(1)):
                    hook.update(body)
                    return 200, hook, {}
        raise LookupError(rest)

    def _mr(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": p["number"] + 5000,
            "iid": p["number"],
            "web_url": self.web(p["number"]),
            "state": "merged" if p["merged"] else ("opened" if p["state"] == "open" else "closed"),
            "title": p["title"],
            "description": p["body"],
            "source_branch": p["head"],
            "target_branch": p["base"],
            "merge_commit_sha": p.get("sha"),
            "sha": "f" * 40,
        }

    def _gitlab(self, method: str, path: str, q: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        project = "/projects/" + urllib.parse.quote(f"{self.owner}/{self.name}", safe="")
        if not path.startswith(project):
            raise LookupError(path)
        rest = path[len(project) :]
        if rest == "/merge_requests" and method == "GET":
            pulls = [p for p in self.state.pulls if not p["merged"] and p["state"] == "open"]
            if q.get("state") != "opened":
                return 400, {"error": "state is invalid"}, {}
            pulls = [p for p in pulls if p["head"] == q.get("source_branch", p["head"])]
            pulls = [p for p in pulls if p["base"] == q.get("target_branch", p["base"])]
            return self._page(path, q, [self._mr(p) for p in pulls])
        if rest == "/merge_requests" and method == "POST":
            for p in self.state.pulls:
                if p["head"] == body["source_branch"] and p["state"] == "open" and not p["merged"]:
                    return 409, {"message": ["Another open merge request already exists for this source branch"]}, {}
            number = len(self.state.pulls) + 1
            p = {
                "number": number,
                "state": "open",
                "merged": False,
                "head": body["source_branch"],
                "base": body["target_branch"],
                "title": body["title"],
                "body": body.get("description", ""),
            }
            self.state.pulls.append(p)
            return 201, self._mr(p), {}
        m = re.fullmatch(r"/merge_requests/(\d+)", rest)
        if m:
            p = self._find(int(m.group(1)))
            if method == "PUT":
                p.update({"title": body.get("title", p["title"]), "body": body.get("description", p["body"])})
            return 200, self._mr(p), {}
        m = re.fullmatch(r"/merge_requests/(\d+)/merge", rest)
        if m and method == "PUT":
            p = self._find(int(m.group(1)))
            p["merged"], p["sha"], p["message"] = True, f"{p['number']:040x}", (body or {}).get("merge_commit_message")
            return 200, self._mr(p), {}
        m = re.fullmatch(r"/merge_requests/(\d+)/notes", rest)
        if m:
            number = int(m.group(1))
            self._find(number)
            if method == "POST":
                self.add_comment(number, body["body"])
                return 201, self.state.comments[number][-1], {}
            if q.get("sort") != "asc":
                return 400, {"error": "expected sort=asc in this fake"}, {}
            return self._page(path, q, self.state.comments.get(number, []))
        m = re.fullmatch(r"/merge_requests/(\d+)/notes/(\d+)", rest)
        if m and method == "PUT":
            for c in self.state.comments.get(int(m.group(1)), []):
                if c["id"] == int(m.group(2)):
                    c["body"] = body["body"]
                    return 200, c, {}
        if rest == "/hooks":
            if method == "POST":
                hook = {"id": self.new_id(), **body}
                self.state.hooks.append(hook)
                return 201, hook, {}
            return self._page(path, q, self.state.hooks)
        m = re.fullmatch(r"/hooks/(\d+)", rest)
        if m and method == "PUT":
            for hook in self.state.hooks:
                if hook["id"] == int(m.group(1)):
                    hook.update(body)
                    return 200, hook, {}
        raise LookupError(rest)
