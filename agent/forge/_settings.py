"""Reaching a forge from settings (the CLI's --forge/--api-url/--token-env/--token-file/--ca-file,
or the controller's flags): the options as data, the one set-up function (`from_settings`), the
git user name a token goes with, and an https URL for OWNER/NAME."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.forge._base import Forge
from agent.forge._errors import ForgeError
from agent.forge._open import open_forge
from agent.forge._remote import read_token, repo_ref

_USERNAMES = {"gitlab": "oauth2"}  # GitHub and Gitea take any user name with a token
_DEFAULT_HOSTS = {"github": "github.com", "gitlab": "gitlab.com"}


@dataclass(frozen=True)
class ForgeOptions:
    """How to reach the forge's API: --forge, --api-url, --token-env/--token-file, --ca-file."""

    kind: str | None = None
    api_url: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None


def forge_options(kind: str | None, api_url: str | None, token_env: str | None, token_file: str | None,
                  ca_file: str | None) -> ForgeOptions:
    return ForgeOptions(kind=kind, api_url=api_url, token_env=token_env,
                        token_file=Path(token_file) if token_file else None,
                        ca_file=Path(ca_file) if ca_file else None)


def username_for(kind: str | None) -> str:
    """The user name git sends with a token of forge `kind`."""
    return _USERNAMES.get(kind or "", "x-access-token")


def connect_forge(remote_url: str, options: ForgeOptions) -> tuple[Forge, str, str]:
    """The forge of `remote_url` (its kind detected from the URL unless options.kind), the token
    read from its file or variable (default: the kind's GITHUB_TOKEN / GITLAB_TOKEN /
    GITEA_TOKEN), and the forge's kind. No network call yet; no token: an error naming where
    it was looked for, never a token."""
    ref = repo_ref(remote_url, kind=options.kind, api_url=options.api_url)
    token = read_token(env=options.token_env, file=options.token_file, kind=ref.kind)
    client = open_forge(ref, token, ca_file=options.ca_file)
    return client, token, ref.kind


def read_git_token(options: ForgeOptions) -> str:
    """The token for `--push` alone, read from --token-file or --token-env."""
    return read_token(env=options.token_env, file=options.token_file, kind=options.kind)


@dataclass
class ForgeAccess:
    """What `from_settings` set up: the forge (None: no PR to open) and the token git pushes
    with (None: git's own credentials), with its user name. Close it when done."""

    forge: Forge | None
    token: str | None
    username: str

    def close(self) -> None:
        if self.forge is not None:
            self.forge.close()

    def __repr__(self) -> str:  # never the token
        return f"ForgeAccess(forge={self.forge!r}, token={'***' if self.token else None}, username={self.username!r})"


def from_settings(options: ForgeOptions, remote_url: str | None = None) -> ForgeAccess:
    """The one forge/auth set-up. With `remote_url` (a PR will be opened on it): the forge and
    its token, an error without a token. Without: no forge, and a token only when
    options.token_env or options.token_file names one (a plain --push)."""
    if remote_url is not None:
        forge, token, kind = connect_forge(remote_url, options)
        return ForgeAccess(forge=forge, token=token, username=username_for(kind))
    if options.token_env or options.token_file:
        return ForgeAccess(forge=None, token=read_git_token(options), username=username_for(options.kind))
    return ForgeAccess(forge=None, token=None, username=username_for(None))


def repo_url(repo: str, kind: str | None, api_url: str | None) -> str:
    """An https URL for OWNER/NAME on the forge (github.com, gitlab.com, or the --api-url's host)."""
    parts = repo.strip("/").split("/")
    if len(parts) < 2 or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) for p in parts):
        raise ForgeError(f"--repo {repo!r} is not OWNER/NAME")
    if api_url:
        split = urlsplit(api_url)
        if not split.scheme or not split.netloc:
            raise ForgeError(f"--api-url {api_url!r} is not a URL")
        host = f"{split.scheme}://{split.netloc}"
        if split.netloc == "api.github.com":
            host = "https://github.com"
    elif kind in _DEFAULT_HOSTS:
        host = f"https://{_DEFAULT_HOSTS[kind]}"
    else:
        raise ForgeError(f"--repo with --forge {kind or '(none)'} needs --api-url URL (or --forge github|gitlab)")
    return f"{host}/{'/'.join(parts)}.git"
