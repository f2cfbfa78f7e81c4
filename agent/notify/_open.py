"""`--notify`: the notification targets, opened into a Sink (agent.notify.Notifier).

The targets come from a file, or from the key `notify.yaml` of a Secret read through the agent's
own cluster client (`secret:NAMESPACE/NAME`). Any problem stops the start (an AgentError: exit
2): an unreadable file or Secret, a field that does not check (file:line: field: message), a
commit status target whose repository or forge cannot be told."""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from pathlib import Path
from typing import Any

from agent._http import without_userinfo
from agent.errors import AgentError, plain_reason
from agent.forge import ForgeError, open_forge, repo_ref
from agent.notify._channels import TIMEOUT, Channel, StatusChannel, WebhookChannel
from agent.notify._config import NotifyConfig, TargetConfig, parse_config
from agent.notify._event import Sink
from agent.notify._notifier import Notifier, NotifyMetrics
from agent.spec import MAX_FILE_BYTES

SECRET_KEY = "notify.yaml"
_DNS = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def read_source(source: str, cluster: Any) -> tuple[str, bytes]:
    """(where, content) of `source`: a file, or secret:NAMESPACE/NAME read with `cluster`."""
    if source.startswith("secret:"):
        namespace, _, name = source.removeprefix("secret:").partition("/")
        if not _DNS.fullmatch(namespace) or not _DNS.fullmatch(name) or len(name) > 253:
            raise AgentError(f"--notify {source}: expected secret:NAMESPACE/NAME (a Secret's namespace and name)")
        where = f"Secret {namespace}/{name} ({SECRET_KEY})"
        if cluster is None:
            raise AgentError(f"--notify {source}: a fleet reads its targets from a file: mount the Secret "
                             f"(key {SECRET_KEY}) as a file and pass --notify PATH")
        try:
            secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", retries=0)
        except AgentError as exc:
            status = getattr(exc, "status", None)
            why = {404: "not found", 403: "the agent may not read it (RBAC: get secrets)"}.get(status or 0, str(exc))
            raise AgentError(f"--notify {source}: {where}: {why}") from None
        raw = ((secret or {}).get("data") or {}).get(SECRET_KEY)
        if not isinstance(raw, str):
            raise AgentError(f"--notify {source}: {where}: the Secret has no key {SECRET_KEY}")
        try:
            return where, base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise AgentError(f"--notify {source}: {where}: its {SECRET_KEY} is not base64") from None
    path = Path(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise AgentError(f"--notify {source}: the file is over {MAX_FILE_BYTES} bytes")
        return source, path.read_bytes()
    except OSError as exc:
        raise AgentError(f"--notify {source}: cannot read it ({plain_reason(exc)})") from None


def _ui_url(value: str | None, where: str) -> str | None:
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        raise AgentError(f"{where}: '{without_userinfo(value)[:100]}' is not an http(s) URL (without credentials)")
    return value


def channels_of(config: NotifyConfig, ui_url: str | None, repo: str | None) -> list[Channel]:
    """One channel per target; `repo`: the followed repository (commit statuses' default)."""
    out: list[Channel] = []
    try:
        for target in config.targets:
            out.append(_status(target, ui_url, repo) if target.type == "commitStatus"
                       else WebhookChannel(target, ui_url))
    except AgentError:
        for channel in out:
            channel.close()
        raise
    return out


def _status(target: TargetConfig, ui_url: str | None, repo: str | None) -> StatusChannel:
    url = target.url or repo or ""
    where = f"--notify: target {target.name} (commitStatus)"
    if not url or url.startswith(("file:", "/")):
        raise AgentError(f"{where}: name the forge repository (repo: https://forge/owner/name): "
                         "the followed repository is not on a forge")
    try:
        ref = repo_ref(url, kind=target.forge, api_url=target.api_url)
        forge = open_forge(ref, target.token, ca_file=target.ca_file, timeout=TIMEOUT)
    except ForgeError as exc:
        raise AgentError(f"{where}: {exc}") from None
    return StatusChannel(target, ui_url, forge)


def open_notifier(source: str, *, cluster: Any, metrics: NotifyMetrics | None, ui_url: str | None,
                  repo: str | None = None) -> Sink:
    """The Sink of `source` (a file, or secret:NAMESPACE/NAME read with `cluster`; None for a
    fleet, which reads a file); `metrics` counts deliveries and drops; links point at `ui_url`
    (--ui-url), else at the file's uiUrl; `repo` is where commit statuses go by default."""
    where, content = read_source(source, cluster)
    config = parse_config(where, content)
    link = _ui_url(ui_url, "--ui-url") or _ui_url(config.ui_url, f"{where}: uiUrl")
    return Notifier(channels_of(config, link, repo), metrics)
