"""The Git-source seam: read a repo's files at a revision as {path: bytes}."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import SpecError

WITHHELD = "(message withheld: it would show a decrypted value; decrypt the file with sops to see it)"


@dataclass(frozen=True)
class Sealed:
    """The SOPS files of a snapshot, decrypted in memory, or (`skipped`, no identity given to a
    command that may go without) left out unread. Their content must reach no disk cache and no
    message: `scrub` withholds a problem's message that would show a decrypted value."""

    paths: frozenset[str]
    skipped: bool = False
    values: frozenset[str] = field(default=frozenset(), repr=False)

    def scrub(self, errors: Iterable[SpecError]) -> list[SpecError]:
        return [dataclasses.replace(e, message=WITHHELD)
                if e.file in self.paths and any(v in e.message for v in self.values) else e for e in errors]


@dataclass(frozen=True)
class Revision:
    """Which commit a snapshot came from (empty for a plain directory)."""

    commit: str = ""
    author: str = ""
    message: str = ""
    ref: str = ""
    signer: str = ""  # who signed the commit, as --verify-signatures verified it ("" when not verified)

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
FILE, LINK, DIR, OTHER = "file", "link", "dir", "other"


def _leaves(rel: str, target: str) -> tuple[str, SpecError | None]:
    """The target's path from the root (textually), or the problem when it leaves the root or
    enters a .git directory: the same for any link, whatever it names."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        return resolved, SpecError(rel, 1, "", f"symlink points outside the repository ({target})")
    if ".git" in resolved.split("/"):
        return resolved, SpecError(rel, 1, "", f"symlink points into a .git directory ({target})")
    return resolved, None


def resolve_link(rel: str, target: str, entry: Callable[[str], str | None]) -> tuple[str | None, SpecError | None]:
    """Where the symlink `rel` (relative to the source root) with the text `target` leads.

    One rule for both sources, so a directory and the commit of the same files agree: the
    target is resolved textually, and it is followed only when it names a regular file inside
    the root, not inside a `.git` directory, reached through real directories only (`entry`
    tells what a path is without following links: FILE, LINK, DIR, OTHER or None when missing,
    and it treats the inside of a nested git repository as missing). Returns the target's path,
    or the problem to report for `rel`."""
    resolved, problem = _leaves(rel, target)
    if problem is not None:
        return None, problem
    if resolved == "." or entry(resolved) != FILE:
        message = (f"symlink target {target!r} is not a regular file of the repository "
                   "(missing, a directory, a link, or reached through a link)")
        return None, SpecError(rel, 1, "", message)
    return resolved, None


def check_other_link(rel: str, target: str, entry: Callable[[str], str | None]) -> SpecError | None:
    """The problem of a symlink whose name is not a manifest's (it is not read), or None.

    It is refused when it points outside the repository or into a .git directory (as a
    manifest's link is: what is out there cannot be told, and a directory of manifests linked
    in from outside must not be left out without a word), and when it names a directory of the
    repository (directory links are never followed: the files would be read twice, or a cycle
    forever). A link to a file or to nothing is left alone, like any file that is not a
    manifest; so is one whose own name starts with a dot (hidden, like a dot-directory)."""
    if posixpath.basename(rel).startswith("."):
        return None
    resolved, problem = _leaves(rel, target)
    if problem is not None:
        return problem
    if resolved == "." or entry(resolved) == DIR:
        return SpecError(rel, 1, "", f"symlink to a directory is not followed ({target}): the manifests "
                                     "under it would be left out; move them here, or link each file")
    return None
