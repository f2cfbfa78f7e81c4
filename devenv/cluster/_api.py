"""A few typed HTTPS calls to the apiserver with the admin client certificate.

Bootstrapping needs only readyz, get, create and server-side apply; plain http.client keeps
those explicit and typed, and talks to nothing but the loopback server it is given.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

from devenv.cluster._errors import DevclusterError

Json = dict[str, Any]
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the apiserver accepts it as is


class ApiError(DevclusterError):
    """The apiserver answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Api:
    """HTTPS client for one apiserver, authenticated by a client certificate."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path, timeout: float = 10.0):
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or url.hostname is None or url.port is None:
            raise DevclusterError(f"not an https://host:port server: {server}")
        self.host = url.hostname
        self.port = url.port
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca))
        self._context.load_cert_chain(str(cert), str(key))

    def raw(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, str]:
        """One request; (status, body text). Connection errors raise OSError."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    def call(
        self,
        method: str,
        path: str,
        obj: Json | None = None,
        content_type: str = "application/json",
    ) -> Json:
        """A JSON request; the decoded JSON answer, or ApiError for any status >= 300."""
        body = None if obj is None else json.dumps(obj, separators=(",", ":")).encode()
        status, text = self.raw(method, path, body, content_type if body is not None else None)
        if status >= 300:
            raise ApiError(method, path, status, text)
        decoded: Json = json.loads(text) if text else {}
        return decoded

    def get(self, path: str) -> Json:
        return self.call("GET", path)

    def create(self, path: str, obj: Json) -> Json:
        """POST obj to the collection path; an existing object (409) is fine."""
        try:
            return self.call("POST", path, obj)
        except ApiError as err:
            if err.status != 409:
                raise
            return self.get(f"{path}/{obj['metadata']['name']}")

    def apply(self, path: str, obj: Json, manager: str, force: bool = True) -> Json:
        """Server-side apply obj at its object path."""
        query = urllib.parse.urlencode({"fieldManager": manager, "force": str(force).lower()})
        return self.call("PATCH", f"{path}?{query}", obj, APPLY_PATCH)

    def readyz(self) -> bool:
        try:
            status, text = self.raw("GET", "/readyz")
        except OSError:
            return False
        return status == 200 and text.strip() == "ok"
