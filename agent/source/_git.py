"""A git repository as a source: read the tree of any commit without checking it out.

One GitPython `Repo` per source, closed deterministically: GitPython keeps `git cat-file`
helper processes alive until `Repo.close()`.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from types import TracebackType
from typing import Any

import git

from agent.errors import SourceError, SpecError
from agent.source._base import DIR, FILE, LINK, OTHER, Revision, Snapshot, check_other_link, resolve_link
from agent.spec import MAX_FILE_BYTES, is_manifest_path

_SYMLINK_MODE = 0o120000
_FILE_MODES = (0o100644, 0o100755, 0o100664)


class GitSource:
    def __init__(self, root: str | Path, subdir: str = "") -> None:
        try:
            self.repo = git.Repo(root, search_parent_directories=False)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise SourceError(f"{root}: not a git repository") from exc
        self.subdir = subdir.strip("/")

    def __enter__(self) -> GitSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def resolve(self, revision: str | None) -> Any:
        try:
            commit = self.repo.commit(revision or "HEAD")
            commit.tree  # noqa: B018 - a well-formed but absent sha only fails when read
            return commit
        except Exception as exc:  # GitPython's rev-parse raises BadName, BadObject, ValueError, IndexError, ...
            raise SourceError(f"unknown revision {revision or 'HEAD'!r}: {_describe(exc)}") from exc

    def _commit_tree(self, revision: str | None) -> tuple[Any, Any]:
        commit = self.resolve(revision)
        tree = commit.tree
        if self.subdir:
            try:
                tree = tree / self.subdir
            except KeyError as exc:
                raise SourceError(f"path {self.subdir!r} does not exist at {commit.hexsha[:12]}") from exc
            if getattr(tree, "type", None) != "tree":  # a file, a symlink or a submodule
                raise SourceError(f"{self.subdir}: not a directory at {commit.hexsha[:12]}")
        return commit, tree

    @staticmethod
    def _revision(commit: Any, revision: str | None) -> Revision:
        return Revision(
            commit=commit.hexsha,
            author=f"{commit.author.name} <{commit.author.email}>",
            message=str(commit.message).strip(),
            ref=revision or "HEAD",
        )

    def identify(self, revision: str | None = None) -> tuple[str, Revision]:
        """The id of the tree that would be read (it names the content: equal ids, equal files)
        and the commit it belongs to, without reading any file."""
        commit, tree = self._commit_tree(revision)
        return str(tree.hexsha), self._revision(commit, revision)

    def snapshot(self, revision: str | None = None) -> Snapshot:
        commit, tree = self._commit_tree(revision)
        blobs: dict[str, Any] = {}
        # submodules (gitlinks) are not descended into, like a nested repository on disk
        for item in tree.traverse():
            if item.type == "blob":
                blobs[posixpath.relpath(item.path, self.subdir) if self.subdir else item.path] = item

        directories: set[str] = set()
        for rel in blobs:
            parent = posixpath.dirname(rel)
            while parent and parent not in directories:
                directories.add(parent)
                parent = posixpath.dirname(parent)

        def entry(rel: str) -> str | None:
            blob = blobs.get(rel)
            if blob is None:
                return DIR if rel in directories else None
            return LINK if blob.mode == _SYMLINK_MODE else FILE if blob.mode in _FILE_MODES else OTHER

        files: dict[str, bytes] = {}
        problems: list[SpecError] = []
        for rel in sorted(blobs):
            if _in_hidden_dir(rel):
                continue
            blob = blobs[rel]
            if not is_manifest_path(rel):
                if blob.mode == _SYMLINK_MODE:  # not read, but a link out or to a directory is refused
                    problem = check_other_link(rel, blob.data_stream.read().decode("utf-8", "replace"), entry)
                    if problem is not None:
                        problems.append(problem)
                continue
            if blob.mode == _SYMLINK_MODE:
                link = blob.data_stream.read().decode("utf-8", "replace")
                target, problem = resolve_link(rel, link, entry)
                if target is None:
                    problems.append(problem)  # type: ignore[arg-type]
                    continue
                blob = blobs[target]
            if blob.size > MAX_FILE_BYTES:
                problems.append(SpecError(rel, 1, "", f"file is {blob.size} bytes, over the limit of {MAX_FILE_BYTES}"))
                continue
            files[rel] = blob.data_stream.read()
        return Snapshot(files=files, revision=self._revision(commit, revision), problems=problems)

    def close(self) -> None:
        self.repo.close()


def _in_hidden_dir(rel: str) -> bool:
    """Like DirectorySource, skip directories whose name starts with a dot (.github, .git-crypt)."""
    return any(part.startswith(".") for part in rel.split("/")[:-1])


def _describe(exc: Exception) -> str:
    """One line about a GitPython error (some cannot even print themselves: BadObject of a str)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return " ".join(text.split()) or type(exc).__name__
