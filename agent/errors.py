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

    def __init__(self, errors: Sequence[SpecError], revision: str = "", target: str = "") -> None:
        self.errors = sorted(set(errors))
        self.revision = revision  # which revision, when a command reads more than one
        self.target = target  # the RepositoryConfig's name when that document is valid ("" if not known)
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


class SignatureError(SourceError):
    """A commit that `--verify-signatures` refuses: unsigned, signed by a key the signers file
    does not allow, or a signature that does not match. Treated like an invalid commit: nothing
    of it applies, the last good one stays. `signer` names who signed it ("unsigned" when no
    one did); `reason` is one of unsigned, not-allowed, bad-signature."""

    def __init__(self, message: str, *, commit: str, signer: str, reason: str) -> None:
        super().__init__(message)
        self.commit = commit
        self.signer = signer
        self.reason = reason


class SignersFileError(AgentError):
    """The signers file (--verify-signatures FILE) cannot be used: unreadable, empty, or neither
    an SSH allowed-signers file nor an OpenPGP public keyring. Not the commit's fault."""
