"""How the controller's git children authenticate to the followed remote (a token file or
variable, an SSH key and known_hosts, a private CA): referenced, read per call, never held."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SourceError, plain_reason

__all__ = ["Credentials"]


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the remote; secrets are referenced, never held in the URL.

    https: a token read from `token_file` (e.g. a mounted Secret, re-read on every call so a
    rotated token is picked up) or from the environment variable named `token_env`, sent as
    the password of `username` (GitHub, GitLab and Gitea accept any user name with a token).
    ssh: a private key file and the known_hosts file the server's key must be in.
    https with a private CA (a company forge, the local Gitea): `ca_file`, the PEM bundle git
    trusts instead of the system's (GIT_SSL_CAINFO of every git child)."""

    token_file: Path | None = None
    token_env: str | None = None
    username: str = "x-access-token"
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    ca_file: Path | None = None

    @property
    def has_token(self) -> bool:
        return self.token_file is not None or self.token_env is not None

    @property
    def has_ssh(self) -> bool:
        return self.ssh_key_file is not None or self.known_hosts_file is not None

    def token(self) -> str:
        """The token, read now; a SourceError that names where it was looked for, never it."""
        if self.token_file is not None:
            try:
                value = Path(self.token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = plain_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
                raise SourceError(f"cannot read the git token file {self.token_file}: {reason}") from None
            where = f"the git token file {self.token_file}"
        else:
            value = os.environ.get(self.token_env or "", "").strip()
            where = f"the environment variable {self.token_env}"
        if not value:
            raise SourceError(f"{where} holds no token")
        if "\n" in value or "\r" in value:
            raise SourceError(f"{where} holds more than one line")
        return value

    def ca_path(self) -> str | None:
        """The CA bundle's absolute path, checked readable now (else git would only say that a
        certificate failed to verify); a SourceError naming the file."""
        if self.ca_file is None:
            return None
        path = os.path.abspath(self.ca_file)
        try:
            with open(path, "rb") as f:
                content = f.read(8 << 20)  # a CA bundle is well below this
        except OSError as exc:
            raise SourceError(f"cannot read the git CA file {self.ca_file}: {exc.strerror or exc}") from None
        if b"-----BEGIN CERTIFICATE-----" not in content:
            raise SourceError(f"the git CA file {self.ca_file} holds no PEM certificate")
        return path
