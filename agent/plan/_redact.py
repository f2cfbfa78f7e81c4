"""Secret values never leave the agent: replace each with a marker and a short keyed hash, so a
diff shows *that* a value changed, never what it is.

The hash is an HMAC under a key drawn at random for each process: equal values give equal
markers within one plan, but a marker cannot be checked against guessed passwords offline.
The Secret's spec-hash annotation (a hash over its values) is masked the same way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

REDACTED_PREFIX = "<redacted sha256:"
_KEY = secrets.token_bytes(32)
_MASKED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "modelops.dev/spec-hash")


def _marker(value: Any) -> str:
    raw = value if isinstance(value, str) else str(value)
    return f"{REDACTED_PREFIX}{hmac.new(_KEY, raw.encode(), hashlib.sha256).hexdigest()[:8]}>"


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of obj with Secret data/stringData values (and the last-applied annotation,
    which would repeat them) replaced by markers. Other kinds are returned unchanged."""
    if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
        return obj
    out = dict(obj)
    # stringData and data name the same keys: hash the decoded value so moving a value
    # from stringData to data is not reported as a change.
    merged: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            merged[key] = base64.b64decode(str(value), validate=True).decode("utf-8", "replace")
        except ValueError:
            merged[key] = str(value)
    for key, value in (obj.get("stringData") or {}).items():
        merged[key] = str(value)
    out.pop("stringData", None)
    if merged:
        out["data"] = {k: _marker(v) for k, v in sorted(merged.items())}
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "annotations" in meta:
        annotations = {
            k: (_marker(v) if k in _MASKED_ANNOTATIONS else v)
            for k, v in meta["annotations"].items()
        }
        out["metadata"] = {**meta, "annotations": annotations}
    return out
