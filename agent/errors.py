"""Errors that carry a location (file, line, field path) from the loader to the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SpecError:
    """One problem in the model repo, printed as ``file:line: field.path: message``."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        field = self.field or "(document)"
        return f"{self.file}:{self.line}: {field}: {self.message}"


class AgentError(Exception):
    """Base of every error the agent reports to a user (exit code 2)."""


class ValidationFailed(AgentError):
    """The repo at a revision is invalid; holds every problem found, sorted by location."""

    def __init__(self, errors: Sequence[SpecError], revision: str = "") -> None:
        self.errors = sorted(set(errors))
        self.revision = revision  # which revision, when a command reads more than one
        super().__init__(f"{len(self.errors)} validation error(s)")

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class SourceError(AgentError):
    """The repo could not be read (missing path, unknown revision, not a git repo)."""


def escaped(value: str, limit: int = 80) -> str:
    """`value` as a message may quote it: a JSON string (quotes, backslashes and control
    characters escaped, any other unprintable character as \\uXXXX), cut after `limit`
    characters with `… (N characters)` saying how long it was. Safe to print: one line, no
    terminal escapes, not Python's repr."""
    head = json.dumps(value[:limit], ensure_ascii=False)
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in head)
    return text + (f"… ({len(value)} characters)" if len(value) > limit else "")
