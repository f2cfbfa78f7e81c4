"""The Git-source seam: read a repo's files at a revision as {path: bytes}."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import SpecError


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


@dataclass
class Snapshot:
    """The manifest files of a repo at one revision, plus problems found while reading it."""

    files: dict[str, bytes]
    revision: Revision = Revision()
    problems: list[SpecError] = field(default_factory=list)


class Source(Protocol):
    """Anything that yields a snapshot: a directory, a git commit, a remote clone."""

    def snapshot(self, revision: str | None = None) -> Snapshot: ...

    def close(self) -> None: ...
