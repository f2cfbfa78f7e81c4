"""Errors that carry a location (file, line, field path) from the loader to the CLI."""

from __future__ import annotations

import json
import re
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


_ERRNO = re.compile(r"\[Errno -?\d+\]\s*([^\])'\"]+)")
_URLOPEN = re.compile(r"^<urlopen error (.*)>$", re.DOTALL)
_SSL_TAG = re.compile(r"\[SSL(?::\s*[A-Z0-9_]+)?\]\s*|\s*\(_ssl\.c:\d+\)")
_REPR_PREFIX = re.compile(r"^<?[A-Za-z_][\w.]*(?:\([^()]*\)| object at 0x[0-9a-f]+)>?:\s*")


def plain_reason(exc: BaseException) -> str:
    """Why a connection or a file operation failed, in words a user reads, never Python's own
    decorations: `connection refused` for `[Errno 111] Connection refused`, `name or service
    not known` for a DNS failure, `certificate verify failed: self-signed certificate` for a
    TLS verification, whatever urllib or urllib3 wrapped it in (`<urlopen error ...>`,
    `HTTPSConnection(host=..., port=...): Failed to establish a new connection: ...`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the innermost OS error says it best
        seen.add(id(current))
        verify = getattr(current, "verify_message", None)
        if isinstance(verify, str) and verify:
            return f"certificate verify failed: {verify}"
        strerror = getattr(current, "strerror", None)
        if isinstance(current, OSError) and isinstance(strerror, str) and strerror and not _SSL_TAG.search(strerror):
            return _first_lower(strerror)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return plain_text(str(exc) or type(exc).__name__)


def plain_text(text: str) -> str:
    """`text` of an exception without `[Errno N]`, `[SSL: X]`, `(_ssl.c:N)` or a leading
    `Class(...):` / `<... object at 0x...>:`; an `[Errno N] Why` inside says why."""
    text = _URLOPEN.sub(r"\1", text.strip())
    match = _ERRNO.search(text)
    if match:
        return _first_lower(match.group(1).strip())
    text = _SSL_TAG.sub("", text).strip()
    while _REPR_PREFIX.match(text):
        text = _REPR_PREFIX.sub("", text, count=1)
    return _first_lower(text.strip()) or "failed"


def _first_lower(text: str) -> str:
    """`Connection refused` -> `connection refused`; `TLS ...` and `EOF ...` stay as they are."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
