"""Where the age identities that open SOPS files come from, as `sops` itself finds them.

`--sops-age-key-file FILE` (the CLI calls `use_age_key_file`) is the only source when given.
Otherwise, like sops: the identities in $SOPS_AGE_KEY (several per line allowed), in the file
$SOPS_AGE_KEY_FILE, and in sops's default key file ($XDG_CONFIG_HOME or ~/.config, then
sops/age/keys.txt) when it exists, all together. Files are read when a snapshot holds an
encrypted file (a rotated key, such as a re-mounted Secret, is picked up on the next read),
in memory only. A message names the source (variable, path, line number), never its content.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.source._age import AgeError, Identity, parse_identities

MAX_KEY_FILE_BYTES = 1 << 20
_key_file: str | None = None  # --sops-age-key-file of this process


class IdentityError(Exception):
    """An identity source that cannot be read or parsed (the message holds no key material)."""


def use_age_key_file(path: str | os.PathLike[str] | None) -> None:
    """The command line's --sops-age-key-file: when set, the only source of age identities."""
    global _key_file
    _key_file = os.fspath(path) if path is not None else None


def default_key_file(environ: Mapping[str, str]) -> Path:
    """sops's default key file: $XDG_CONFIG_HOME/sops/age/keys.txt, else ~/.config/sops/age/keys.txt."""
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "sops" / "age" / "keys.txt"


@dataclass
class KeyRing:
    """The age identities of one read of a repo, loaded on first use."""

    key_file: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    default_file: bool = False  # sops's default key file too, when it exists
    _loaded: list[Identity] | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls) -> KeyRing:
        return cls(key_file=_key_file, environ=dict(os.environ), default_file=True)

    def sources(self) -> list[tuple[str, str | None]]:
        """(how the source is named in messages, the file to read or None for $SOPS_AGE_KEY)."""
        if self.key_file is not None:
            return [(f"--sops-age-key-file ({self.key_file})", self.key_file)]
        found: list[tuple[str, str | None]] = []
        if self.environ.get("SOPS_AGE_KEY"):
            found.append(("SOPS_AGE_KEY", None))
        if self.environ.get("SOPS_AGE_KEY_FILE"):
            path = self.environ["SOPS_AGE_KEY_FILE"]
            found.append((f"SOPS_AGE_KEY_FILE ({path})", path))
        default = default_key_file(self.environ)
        if self.default_file and default.is_file():
            found.append((str(default), str(default)))
        return found

    def configured(self) -> bool:
        """Whether any source of identities is given (a wrong one is still an error later)."""
        return bool(self.sources())

    def described(self) -> str:
        return ", ".join(name for name, _ in self.sources())

    def identities(self) -> list[Identity]:
        """Every identity of every source; raises IdentityError naming the source that fails."""
        if self._loaded is not None:
            return self._loaded
        found: list[Identity] = []
        for name, path in self.sources():
            text = self.environ.get("SOPS_AGE_KEY", "") if path is None else _read(name, path)
            if text.startswith(("age-encryption.org/", "-----BEGIN AGE")):
                raise IdentityError(f"{name} is a passphrase-protected age identity file, which the agent cannot open")
            try:
                found.extend(parse_identities(text, several_per_line=path is None))
            except AgeError as exc:
                raise IdentityError(f"{name}: {exc}") from None
        self._loaded = found
        return found


def _read(name: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise IdentityError(f"cannot read the age key file {name}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise IdentityError(f"the age key file {name} is over {MAX_KEY_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError(f"the age key file {name} is not UTF-8 text") from None
