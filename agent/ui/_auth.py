"""`--ui-auth-file`: who may read the web UI. A YAML file with `token: ...` (a bearer token)
and/or `basic: {username: ..., password: ...}`; a request must carry one of them. Read once at
start (a bad file is an AgentError naming the file and the field); compared in constant time
(hmac.compare_digest); never shown: no log, page or error holds a credential."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import AgentError

REALM = "modelops-agent"


@dataclass(frozen=True)
class Auth:
    """The credentials a request must carry (at least one is set). repr shows no secret."""

    token: bytes | None = field(default=None, repr=False)
    username: bytes | None = field(default=None, repr=False)
    password: bytes | None = field(default=None, repr=False)

    def allows(self, authorization: str | None) -> bool:
        """Does this Authorization header value carry the token or the basic credentials?"""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token is not None:
            return hmac.compare_digest(value.encode("utf-8", "replace"), self.token)
        if scheme.lower() == "basic" and self.username is not None and self.password is not None:
            try:
                decoded = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                return False
            user, sep, password = decoded.partition(b":")
            # both compared whatever the first says: the time taken tells nothing
            same_user = hmac.compare_digest(user, self.username)
            same_password = hmac.compare_digest(password, self.password)
            return bool(sep) and same_user and same_password
        return False

    def challenge(self) -> str:
        """The WWW-Authenticate of a 401: Basic when basic credentials exist (a browser then asks)."""
        if self.username is not None:
            return f'Basic realm="{REALM}", charset="UTF-8"'
        return f'Bearer realm="{REALM}"'


def _text(value: Any, where: str, name: str) -> bytes:
    if not isinstance(value, str) or not value.strip():
        raise AgentError(f"{where}: {name} must be a non-empty string")
    if value != value.strip() or any(c in value for c in "\r\n\0"):
        raise AgentError(f"{where}: {name} must be one line without surrounding spaces")
    return value.encode("utf-8")


def load_auth(path: str | Path) -> Auth:
    """The credentials in the file at `path` (see the module docstring); AgentError when it
    cannot be read or does not hold them, naming the file and the field (never the value)."""
    where = str(path)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read the UI auth file {where}: {type(exc).__name__}") from None
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise AgentError(f"{where}: not YAML (expected `token:` and/or `basic: {{username, password}}`)") from None
    if not isinstance(doc, dict) or not doc:
        raise AgentError(f"{where}: expected a mapping with `token:` and/or `basic: {{username, password}}`")
    unknown = sorted(str(k) for k in doc if k not in ("token", "basic"))
    if unknown:
        raise AgentError(f"{where}: unknown field {unknown[0]} (expected token, basic)")
    token = _text(doc["token"], where, "token") if "token" in doc else None
    username = password = None
    if "basic" in doc:
        basic = doc["basic"]
        if not isinstance(basic, dict):
            raise AgentError(f"{where}: basic must be a mapping with username and password")
        extra = sorted(str(k) for k in basic if k not in ("username", "password"))
        if extra:
            raise AgentError(f"{where}: unknown field basic.{extra[0]} (expected username, password)")
        username = _text(basic.get("username"), where, "basic.username")
        if b":" in username:
            raise AgentError(f"{where}: basic.username must not hold a colon")
        password = _text(basic.get("password"), where, "basic.password")
    return Auth(token=token, username=username, password=password)
