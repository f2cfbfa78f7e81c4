"""Guards of the command line against reading the wrong thing, and against burying the reader.

`outside_repo`: a command run outside any model repo (`cd /tmp; agent rollout status`) would
read every YAML file below the directory (virtualenvs, test folders) and report thousands of
problems. A directory is taken as a model repo when a RepositoryConfig is in it or above it
(the CLI's root lookup), when it is a git top level (a repo may keep its RepositoryConfig in a
subdirectory, or have none), or when it holds a document of ours directly (a bare directory of
manifests). Anything else gets one line saying so and how to name the repo.

`error_lines`: a long error list in text output is cut after the first `ERROR_LIMIT`, with a
line saying how many more there are and where to see them all.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

ERROR_LIMIT = 50
_OUR_DOCUMENT = re.compile(rb"""^apiVersion:[ \t]*["']?modelops\.dev/""", re.MULTILINE)
_SCAN_BYTES = 1 << 20
_COMMANDS_WITH_MODEL = {("promote",), ("rollout", "abort"), ("rollout", "promote"), ("rollout", "pause"),
                        ("rollout", "resume")}


def _holds_our_document(directory: Path) -> bool:
    """Some *.yaml / *.yml file directly in `directory` has a top-level `apiVersion:
    modelops.dev/...` line (a cheap text check)."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.suffix not in (".yaml", ".yml") or not entry.is_file():
            continue
        try:
            with entry.open("rb") as f:
                if _OUR_DOCUMENT.search(f.read(_SCAN_BYTES)):
                    return True
        except OSError:
            continue
    return False


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


def outside_repo(path: str, args: argparse.Namespace) -> str | None:
    """The one-line error for a directory PATH with no RepositoryConfig in it or above it (the
    caller has looked) that is no model repo either: not a git top level, no document of ours
    in it. None when PATH may be a model repo."""
    directory = Path(path)
    if not directory.is_dir() or os.path.lexists(directory / ".git") or _holds_our_document(directory):
        return None
    return (f"no model repo at {os.path.abspath(path)} (no RepositoryConfig found in it or above it); pass the "
            f"repo's path: {usage(args)}")


def error_lines(errors: Sequence[object], limit: int = ERROR_LIMIT) -> list[str]:
    """The errors as lines, the first `limit` of a longer list then how many more there are."""
    lines = [str(e) for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more; agent validate PATH -o json lists them all")
    return lines
