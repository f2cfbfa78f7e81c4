"""Edge: where repo files come from (a directory or a git commit)."""

from __future__ import annotations

from pathlib import Path

from agent.errors import SourceError
from agent.source._base import Revision, Snapshot, Source
from agent.source._directory import DirectorySource
from agent.source._git import GitSource

__all__ = ["DirectorySource", "GitSource", "Revision", "Snapshot", "Source", "open_source"]


def open_source(path: str | Path, revision: str | None = None) -> Source:
    """A GitSource when a revision is asked for (PATH may be a subdirectory of the repo),
    otherwise the directory as it is on disk."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{path}: no such file or directory")
    if revision is None:
        return DirectorySource(p)
    if not p.is_dir():  # as without --revision: the repo is a directory
        raise SourceError(f"{path}: not a directory")
    import git

    try:
        top = git.Repo(p, search_parent_directories=True)
    except git.InvalidGitRepositoryError as exc:
        raise SourceError(f"{path}: --revision needs a git repository") from exc
    root = Path(top.working_tree_dir or p)
    top.close()
    sub = p.resolve().relative_to(root.resolve()).as_posix()
    return GitSource(root, "" if sub == "." else sub)
