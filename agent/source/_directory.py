"""A plain directory as a source (no git needed): `agent validate ./repo`.

It reads what a commit of the same files would hold, so that `agent validate DIR` and
`agent validate DIR --revision REV` agree: dot-directories and nested git repositories (a
directory with a `.git` entry: a submodule or an embedded repo, a gitlink in the commit) are
skipped, and symlinks follow the rule of `resolve_link` (a manifest's) and `check_other_link`
(any other: refused when it leaves the repository or names a directory).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import SourceError, SpecError
from agent.source._base import DIR, FILE, LINK, OTHER, Snapshot, check_other_link, resolve_link
from agent.spec import MAX_FILE_BYTES, is_manifest_path


class DirectorySource:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceError(f"{root}: not a directory")

    def snapshot(self, revision: str | None = None) -> Snapshot:
        if revision is not None:
            raise SourceError("a plain directory has no revisions (use a git repository)")
        files: dict[str, bytes] = {}
        problems: list[SpecError] = []

        def unreadable(exc: OSError) -> None:
            rel = Path(exc.filename).relative_to(self.root).as_posix() if exc.filename else "."
            problems.append(SpecError(rel, 1, "", f"cannot read the directory: {exc.strerror}"))

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable, followlinks=False):
            base = Path(dirpath)
            # os.walk lists a symlink to a directory among the directories; it is a link all the same
            links = [d for d in dirnames if (base / d).is_symlink()]
            dirnames[:] = sorted(d for d in dirnames if d not in links and not d.startswith(".")
                                 and not _is_nested_repo(base / d))
            for name in sorted([*filenames, *links]):
                full = base / name
                rel = full.relative_to(self.root).as_posix()
                if not is_manifest_path(rel):
                    if name in links or os.path.islink(full):  # not read, but checked like a commit's link
                        try:
                            problem = check_other_link(rel, os.readlink(full), self._entry)
                        except OSError as exc:
                            problem = SpecError(rel, 1, "", f"cannot read the link: {exc.strerror or exc}")
                        if problem is not None:
                            problems.append(problem)
                    continue
                try:
                    mode = full.lstat().st_mode
                    if stat.S_ISLNK(mode):
                        target, problem = resolve_link(rel, os.readlink(full), self._entry)
                        if target is None:
                            problems.append(problem)  # type: ignore[arg-type]
                            continue
                        full = self.root / target
                    elif not stat.S_ISREG(mode):  # a FIFO would block the read forever
                        problems.append(SpecError(rel, 1, "", "not a regular file"))
                        continue
                    size = full.stat().st_size
                    if size > MAX_FILE_BYTES:
                        problems.append(SpecError(rel, 1, "", f"file is {size} bytes, over the limit of {MAX_FILE_BYTES}"))
                        continue
                    with full.open("rb") as f:
                        files[rel] = f.read(MAX_FILE_BYTES + 1)
                except OSError as exc:
                    problems.append(SpecError(rel, 1, "", f"cannot read the file: {exc.strerror or exc}"))
                    continue
                if len(files[rel]) > MAX_FILE_BYTES:  # it grew while being read
                    del files[rel]
                    problems.append(SpecError(rel, 1, "", f"file is over the limit of {MAX_FILE_BYTES} bytes"))
        return Snapshot(files=files, problems=sorted(problems))

    def _entry(self, rel: str) -> str | None:
        """What `rel` is, without following links; None if missing or inside a nested repo."""
        path = self.root
        parts = rel.split("/")
        try:
            for i, part in enumerate(parts):
                path = path / part
                mode = path.lstat().st_mode
                if i == len(parts) - 1:
                    if stat.S_ISDIR(mode):
                        return None if _is_nested_repo(path) else DIR
                    return FILE if stat.S_ISREG(mode) else LINK if stat.S_ISLNK(mode) else OTHER
                if not stat.S_ISDIR(mode):
                    return LINK if stat.S_ISLNK(mode) else None
                if _is_nested_repo(path):
                    return None
        except OSError:
            return None
        return None

    def close(self) -> None:
        return None


def _is_nested_repo(directory: Path) -> bool:
    return os.path.lexists(directory / ".git")
