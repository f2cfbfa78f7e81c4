"""Compare a desired Secret with a live one by the bytes they hold.

The API server keeps only `data`: a Secret written with `stringData` reads back as `data`, and
server-side apply records ownership of `f:stringData`, which no later write takes away. So the
spec-hash and the owned fields cannot tell whether a value was changed under us; its bytes can.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any


def _is_secret(obj: dict[str, Any]) -> bool:
    return obj.get("apiVersion") == "v1" and obj.get("kind") == "Secret"


def _decoded(data: Any) -> dict[str, bytes] | None:
    """data's values base64-decoded, or None if it is not a mapping of valid base64 strings."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        return None
    out: dict[str, bytes] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            return None
        try:
            out[str(key)] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    return out


def effective_data(secret: dict[str, Any]) -> dict[str, bytes] | None:
    """What the API server stores for this Secret: data decoded, stringData (UTF-8) merged over
    it, as the server does. None if either is malformed (the server would reject it)."""
    merged = _decoded(secret.get("data"))
    strings = secret.get("stringData")
    if merged is None or not (strings is None or isinstance(strings, dict)):
        return None
    for key, value in (strings or {}).items():
        if not isinstance(value, str):
            return None
        merged[str(key)] = value.encode("utf-8")
    return merged


def secret_data_matches(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """True unless `want` is a v1 Secret whose values or type the live Secret `have` does not hold.

    Every key `want` declares (in data or stringData) must be in `have`'s data with the same
    bytes, and the types must agree (both default to Opaque). Keys only `have` holds are not
    ours: server-side apply would leave them, so they are no reason to apply. A malformed
    `want` or `have` does not match, so the caller falls back to a dry-run that reports it.
    Pure; compares bytes only and returns no value, so nothing secret can leak from it.
    """
    if not _is_secret(want):
        return True
    if not _is_secret(have):
        return False
    if (want.get("type") or "Opaque") != (have.get("type") or "Opaque"):
        return False
    wanted = effective_data(want)
    held = _decoded(have.get("data"))
    if wanted is None or held is None:
        return False
    return all(key in held and held[key] == value for key, value in wanted.items())
