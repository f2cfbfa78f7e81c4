"""The Git-source seam: read a repo's files at a revision as {path: bytes}."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.errors import SpecError

if TYPE_CHECKING:
    from agent.source._sops import Sealed


@dataclass(frozen=True)
class Revision:
    """Which commit a snapshot came from (empty for a plain directory)."""

    commit: str = ""
    author: str = ""
    message: str = ""
    ref: str = ""

    @property
    def short(self) -> str:
        return self.commit[:12] if self.commit else "working-tree"

    @property
    def pull_request(self) -> str:
        """The pull/merge request a merge commit came from, as its forge writes it ("#12",
        "group/project!12"), or "" if the message names none. Read from the message the forge
        wrote on merge, so the audit log can say which PR a rollout was."""
        for pattern in _PR_PATTERNS:
            found = pattern.search(self.message)
            if found:
                return found.group(1)
        return ""


# Merge commit messages, most specific first: GitLab's trailer, Gitea's and GitHub's merge
# commits, then a squash-merge subject ending in "(#12)" (GitHub, Gitea).
_PR_PATTERNS = (
    re.compile(r"^See merge request ([\w./-]+![0-9]+)\s*$", re.MULTILINE),
    re.compile(r"^Merge pull request '.*' \((#[0-9]+)\) from ", re.MULTILINE),
    re.compile(r"^Merge pull request (#[0-9]+) from ", re.MULTILINE),
    re.compile(r"\A[^\n]*\((#[0-9]+)\)[ \t]*$", re.MULTILINE),
)


@dataclass
class Snapshot:
    """The manifest files of a repo at one revision, plus problems found while reading it."""

    files: dict[str, bytes]
    revision: Revision = Revision()
    problems: list[SpecError] = field(default_factory=list)
    # its SOPS files, decrypted in memory (agent.source._sops): never to be cached on disk or shown
    sealed: Sealed | None = None


class Source(Protocol):
    """Anything that yields a snapshot: a directory, a git commit, a remote clone."""

    def snapshot(self, revision: str | None = None) -> Snapshot: ...

    def close(self) -> None: ...


# What a path of the tree is, as seen without following any symlink.
FILE, LINK, OTHER = "file", "link", "other"


def resolve_link(rel: str, target: str, entry: Callable[[str], str | None]) -> tuple[str | None, SpecError | None]:
    """Where the symlink `rel` (relative to the source root) with the text `target` leads.

    One rule for both sources, so a directory and the commit of the same files agree: the
    target is resolved textually, and it is followed only when it names a regular file inside
    the root, not inside a `.git` directory, reached through real directories only (`entry`
    tells what a path is without following links: FILE, LINK, OTHER or None when missing, and
    it treats the inside of a nested git repository as missing). Returns the target's path,
    or the problem to report for `rel`."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        return None, SpecError(rel, 1, "", f"symlink points outside the repository ({target})")
    if ".git" in resolved.split("/"):
        return None, SpecError(rel, 1, "", f"symlink points into a .git directory ({target})")
    if resolved == "." or entry(resolved) != FILE:
        message = (f"symlink target {target!r} is not a regular file of the repository "
                   "(missing, a directory, a link, or reached through a link)")
        return None, SpecError(rel, 1, "", message)
    return resolved, None
