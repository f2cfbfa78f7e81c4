"""Guards of the command line against reading the wrong thing, and against burying the reader.

`outside_repo`: a command run outside any model repo (`cd /tmp; agent rollout status`) would
read every YAML file below the directory (virtualenvs, test folders) and report thousands of
problems. A directory is taken as a model repo when a RepositoryConfig is in it or above it
(the CLI's root lookup), when it is a git top level, or when the documents of ours below it
are not all inside the one model repo below it (a repo may keep its RepositoryConfig in a
subdirectory, or have none). Anything else (nothing of ours below, several model repos below,
or one that holds everything, or too many files to look at) gets one line saying so and how to
name the repo.

`error_lines`: a long error list in text output is cut after the first `ERROR_LIMIT`, with a
line saying how many more there are and where to see them all.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ERROR_LIMIT = 50
_OUR_DOCUMENT = re.compile(rb"""^apiVersion:[ \t]*["']?modelops\.dev/""", re.MULTILINE)
_SCAN_BYTES = 64 * 1024  # the head of a file: where its documents' apiVersion and kind are
MAX_FILES = 5_000  # YAML files looked at below a directory with no RepositoryConfig before giving up
MAX_ENTRIES = 200_000  # directory entries walked
_COMMANDS_WITH_MODEL = {("promote",), ("rollout", "abort"), ("rollout", "promote"), ("rollout", "pause"),
                        ("rollout", "resume")}


@dataclass
class Survey:
    """What lies below a directory: the directories of RepositoryConfig files and of our other
    documents (`apiVersion: modelops.dev/...`), and whether the walk stopped early."""

    configs: list[Path] = field(default_factory=list)
    ours: list[Path] = field(default_factory=list)
    cut: bool = False


def survey(directory: Path, config_kind: re.Pattern[bytes]) -> Survey:
    """Walk `directory` as the loader would (dot directories skipped, links not followed),
    reading the head of each *.yaml / *.yml file; stop at a second RepositoryConfig or past
    MAX_FILES files or MAX_ENTRIES entries (cut)."""
    found = Survey()
    files = entries = 0
    for top, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        entries += len(dirs) + len(names)
        for name in sorted(names):
            if not name.endswith((".yaml", ".yml")):
                continue
            files += 1
            path = os.path.join(top, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read
                    continue
                with open(path, "rb") as f:
                    head = f.read(_SCAN_BYTES)
            except OSError:
                continue
            if config_kind.search(head):
                found.configs.append(Path(top))
                if len(found.configs) > 1:
                    return found
            elif _OUR_DOCUMENT.search(head):
                found.ours.append(Path(top))
        if files > MAX_FILES or entries > MAX_ENTRIES:
            found.cut = True
            return found
    return found


def usage(args: argparse.Namespace) -> str:
    """The command as typed, with MODEL and PATH: `agent rollout status MODEL PATH`."""
    words = [str(args.command)]
    sub = getattr(args, f"{args.command}_command", None)  # rollout status, registry sync
    if sub:
        words.append(str(sub))
    if tuple(words) in _COMMANDS_WITH_MODEL:
        words.append("MODEL")
    elif tuple(words) == ("rollout", "status"):
        words.append("[MODEL]")
    return " ".join(["agent", *words, "PATH"])


def outside_repo(path: str, args: argparse.Namespace, config_kind: re.Pattern[bytes]) -> str | None:
    """The one-line error for a directory PATH with no RepositoryConfig in it or above it (the
    caller has looked) that is no model repo either; None when PATH may be one: a git top level,
    or a directory of our documents with at most one RepositoryConfig below, which is not the
    root of them all (a repo may keep its RepositoryConfig in a subdirectory, or have none)."""
    directory = Path(path)
    if not directory.is_dir() or os.path.lexists(directory / ".git"):
        return None
    found = survey(directory, config_kind)
    if not found.cut:
        if len(found.configs) == 1 and any(not d.is_relative_to(found.configs[0]) for d in found.ours):
            return None
        if not found.configs and found.ours:
            return None
    message = (f"no model repo at {os.path.abspath(path)} (no RepositoryConfig found in it or above it); pass the "
               f"repo's path: {usage(args)}")
    if found.configs:
        below = ", ".join(str(d) for d in found.configs[:2])
        message += f" (below it: {below}{', ...' if len(found.configs) > 1 else ''})"
    return message


def error_lines(errors: Sequence[object], limit: int = ERROR_LIMIT) -> list[str]:
    """The errors as lines, the first `limit` of a longer list then how many more there are."""
    lines = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more; agent validate PATH -o json lists them all")
    return lines
