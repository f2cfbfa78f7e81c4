"""A plain directory as a source (no git needed): `agent validate ./repo`."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import SourceError, SpecError
from agent.source._base import Snapshot
from agent.spec import is_manifest_path
from agent.spec._yaml import MAX_FILE_BYTES


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
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(dirpath)
            for name in sorted(filenames):
                full = base / name
                rel = full.relative_to(self.root).as_posix()
                if not is_manifest_path(rel):
                    continue
                if full.is_symlink():
                    try:
                        target = full.resolve()
                    except (RuntimeError, OSError):  # a loop (RuntimeError before Python 3.13)
                        problems.append(SpecError(rel, 1, "", "symlink loop"))
                        continue
                    if not target.is_relative_to(self.root):
                        problems.append(SpecError(rel, 1, "", f"symlink points outside the repository ({os.readlink(full)})"))
                        continue
                    if not target.is_file():
                        problems.append(SpecError(rel, 1, "", "symlink target is missing or not a file"))
                        continue
                    full = target
                size = full.stat().st_size
                if size > MAX_FILE_BYTES:
                    problems.append(SpecError(rel, 1, "", f"file is {size} bytes, over the limit of {MAX_FILE_BYTES}"))
                    continue
                files[rel] = full.read_bytes()
        return Snapshot(files=files, problems=problems)

    def close(self) -> None:
        return None
