"""From a git remote URL to a `RepoRef` (forge kind, API root, owner, name), and reading tokens.

The agent already knows the model repo's remote; asking the user for owner, name and API root
as well would be three more ways to disagree with it. Only what a URL cannot tell is asked for:
the forge kind on hosts other than github.com/gitlab.com, and the API root when it is unusual
(a GitLab behind a sub-path, a Gitea reached over ssh whose web UI lives under a sub-path).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

from agent.errors import plain_reason
from agent.forge._base import KINDS, RepoRef
from agent.forge._errors import ForgeError

DEFAULT_TOKEN_ENV = {"github": "GITHUB_TOKEN", "gitlab": "GITLAB_TOKEN", "gitea": "GITEA_TOKEN"}
_API_SUFFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
_SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[^\]]+\]):(?!//)(?P<path>.+)")


def _redact(remote_url: str) -> str:
    """The URL without user:password (a remote may carry a token there)."""
    try:
        p = urllib.parse.urlsplit(remote_url)
    except ValueError:
        return "(unparsable URL)"
    if p.scheme and "@" in p.netloc:
        return urllib.parse.urlunsplit(p._replace(netloc="***@" + p.netloc.rsplit("@", 1)[1]))
    return remote_url


def _split(remote_url: str) -> tuple[str, str, int | None, list[str], bool]:
    """(scheme, host, port, path segments, is_ssh) of a remote URL; no user info kept."""
    url = remote_url.strip()
    if "://" in url:
        try:
            p = urllib.parse.urlsplit(url)
            port = p.port
        except ValueError:
            raise ForgeError(f"git remote {_redact(url)!r}: not a URL") from None
        scheme = p.scheme.lower()
        if scheme not in ("http", "https", "ssh", "git", "git+ssh", "ssh+git"):
            raise ForgeError(f"git remote {_redact(url)!r}: scheme {scheme!r} is not http(s) or ssh")
        host = (p.hostname or "").lower()
        path = p.path
        is_ssh = scheme not in ("http", "https")
    else:
        m = _SCP_LIKE.fullmatch(url)
        if m is None:
            raise ForgeError(
                f"git remote {_redact(url)!r}: expected https://host/owner/name, ssh://git@host/owner/name or git@host:owner/name"
            )
        scheme, host, port, path, is_ssh = "ssh", m.group("host").strip("[]").lower(), None, m.group("path"), True
    if not host:
        raise ForgeError(f"git remote {_redact(url)!r}: no host")
    path = path.strip("/").removesuffix(".git").strip("/")
    segments = [seg for seg in path.split("/") if seg]
    # GitLab web URLs may carry "/-/tree/main" and the like: the repository path ends before "/-/".
    if "-" in segments:
        segments = segments[: segments.index("-")]
    if len(segments) < 2:
        raise ForgeError(f"git remote {_redact(url)!r}: the path must name an owner and a repository")
    return scheme, host, port, segments, is_ssh


def repo_ref(remote_url: str, kind: str | None = None, api_url: str | None = None) -> RepoRef:
    """The forge repository a git remote URL points at (see the module docstring for the rules)."""
    scheme, host, port, segments, is_ssh = _split(remote_url)
    if kind is None:
        if host == "github.com":
            kind = "github"
        elif host == "gitlab.com":
            kind = "gitlab"
        else:
            raise ForgeError(
                f"git remote {_redact(remote_url)!r}: cannot tell which forge {host} runs; "
                "pass --forge github|gitlab|gitea"
            )
    if kind not in KINDS:
        raise ForgeError(f"forge kind {kind!r}: expected one of {', '.join(KINDS)}")
    web_scheme = "https" if is_ssh else scheme
    hostport = host if (is_ssh or port is None) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        hostport = f"[{host}]" if (is_ssh or port is None) else f"[{host}]:{port}"

    api_prefix = ""
    if api_url is not None:
        api_url = api_url.strip().rstrip("/")
        ap = urllib.parse.urlsplit(api_url)
        if ap.scheme not in ("http", "https") or not ap.netloc:
            raise ForgeError(f"API URL {api_url!r}: expected http(s)://host[/path]")
        api_prefix = ap.path.removesuffix(_API_SUFFIX[kind]).strip("/")

    if kind == "gitlab":
        # Namespaces nest (group/sub/name), so a web sub-path cannot be told from a group:
        # without an API URL the whole path is the project; with one, its prefix is dropped.
        prefix_segs = api_prefix.split("/") if api_prefix else []
        if prefix_segs and segments[: len(prefix_segs)] == prefix_segs and len(segments) - len(prefix_segs) >= 2:
            segments = segments[len(prefix_segs) :]
        owner, name, prefix = "/".join(segments[:-1]), segments[-1], ""
    else:
        owner, name = segments[-2], segments[-1]
        prefix = "" if is_ssh else "/".join(segments[:-2])

    if api_url is None:
        root = f"{web_scheme}://{hostport}" + (f"/{prefix}" if prefix else "")
        if kind == "github":
            api_url = "https://api.github.com" if host == "github.com" else f"{web_scheme}://{hostport}/api/v3"
        else:
            api_url = root + _API_SUFFIX[kind]
    return RepoRef(kind=kind, api_url=api_url, owner=owner, name=name)


def read_token(env: str | None = None, file: str | Path | None = None, kind: str | None = None) -> str:
    """The API token: from `file` if given, else env var `env`, else the kind's default env var.

    Errors name where the token was looked for, never what was found there.
    """
    if file is not None:
        try:
            raw = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = plain_reason(e) if isinstance(e, OSError) else "not UTF-8 text"
            raise ForgeError(f"token file {str(file)!r}: cannot read it ({why})") from None
        return _check(raw, f"token file {str(file)!r}")
    if env is None:
        if kind is None:
            raise ForgeError("no forge token: pass a token file or an environment variable name (or the forge kind)")
        if kind not in DEFAULT_TOKEN_ENV:
            raise ForgeError(f"forge kind {kind!r}: expected one of {', '.join(KINDS)}")
        env = DEFAULT_TOKEN_ENV[kind]
    raw_env = os.environ.get(env)
    if raw_env is None:
        raise ForgeError(f"no forge token: environment variable {env} is not set")
    return _check(raw_env, f"environment variable {env}")


def _check(raw: str, where: str) -> str:
    token = raw.strip()
    if not token:
        raise ForgeError(f"{where} is empty; expected one line holding the API token")
    if "\n" in token or "\r" in token:
        raise ForgeError(f"{where} holds more than one line; expected one line holding the API token")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ForgeError(f"{where} holds control characters; expected the API token alone")
    return token
