"""Links the UI may show: only http(s) URLs (a `javascript:` or `data:` URL from a repo never
becomes a link), never with user info; and the forge's web pages of a commit and a pull request
when the model repo's remote is on a known forge (GitHub, GitLab, Gitea)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from agent.forge import ForgeError, repo_ref

_SHA = re.compile(r"[0-9a-f]{7,64}")
_NUMBER = re.compile(r"[#!]?([0-9]{1,9})")


def safe_url(url: object) -> str | None:
    """`url` when it is an absolute http(s) URL without user info, spaces or quotes; else None."""
    if not isinstance(url, str) or len(url) > 2000 or any(c in url for c in " \t\r\n\"'<>\\`"):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc or not port_ok:
        return None
    return url


@dataclass(frozen=True)
class ForgeLinks:
    """The web pages of one repository on a forge: `web` is its http(s) root."""

    kind: str  # github | gitlab | gitea
    web: str

    def commit(self, sha: object) -> str | None:
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            return None
        return f"{self.web}/-/commit/{sha}" if self.kind == "gitlab" else f"{self.web}/commit/{sha}"

    def pull(self, ref: object) -> str | None:
        """A pull request as the audit log names it: its URL, `#12` or `!12` (GitLab)."""
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            return safe_url(ref)
        m = _NUMBER.fullmatch(str(ref)) if isinstance(ref, str | int) and not isinstance(ref, bool) else None
        if m is None:
            return None
        number = m.group(1)
        return {"github": f"{self.web}/pull/{number}", "gitlab": f"{self.web}/-/merge_requests/{number}",
                "gitea": f"{self.web}/pulls/{number}"}.get(self.kind)


def forge_links(remote: str | None, kind: str | None = None) -> ForgeLinks | None:
    """The forge links of the git remote `remote` (None: not a forge this can tell, or `kind`
    not given for a host other than github.com/gitlab.com, or not reachable over http(s))."""
    if not remote:
        return None
    try:
        ref = repo_ref(remote, kind)
    except ForgeError:
        return None
    m = re.fullmatch(r"(?:ssh://)?[^@/]+@([^:/]+)(?::[0-9]+)?[:/](.+)", remote)
    if m is not None and not remote.startswith(("http://", "https://")):
        scheme, host, path = "https", m.group(1), m.group(2)
    else:
        try:
            parts = urllib.parse.urlsplit(remote)
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
        except ValueError:
            return None
        scheme, path = parts.scheme.lower(), parts.path
    if scheme not in ("http", "https") or not host:
        return None
    path = path.strip("/").removesuffix(".git").strip("/")
    if "/-/" in f"/{path}/":
        path = path[: f"/{path}/".index("/-/")].strip("/")
    web = safe_url(f"{scheme}://{host}/{path}")
    if web is None or not path.endswith(ref.name):
        return None
    return ForgeLinks(ref.kind, web)
