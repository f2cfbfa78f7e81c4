"""The notification targets file (`--notify FILE`, or a Secret's `notify.yaml`), parsed and
checked before the agent starts: every problem names file, line and field, and stops the start.

```yaml
uiUrl: https://agent.example/
targets:
  - name: team-slack
    type: slack                       # slack | cloudevents | commitStatus
    url: {fromFile: /var/run/secrets/slack-url}
    events: [commit-applied, rollout-rolled-back]
    models: [fraud-scorer, risk/other]
    targets: [models-production]
```

A secret value (`url`, a header value, `token`) is written as `{fromFile: PATH}` or
`{fromEnv: NAME}`; a plain `url` is for URLs that hold no secret. See docs/notifications.md."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import AgentError, SpecError, escaped, plain_reason
from agent.forge import KINDS as FORGE_KINDS
from agent.notify._event import EVENT_KINDS
from agent.spec import YamlDocument, parse_yaml

TYPES = ("slack", "cloudevents", "commitStatus")
# the events a commit status says something about, and the state each sets
STATUS_STATES = {"commit-pending": "pending", "commit-applied": "success", "rollout-succeeded": "success",
                 "commit-failed": "failure", "commit-invalid": "failure", "rollout-rolled-back": "failure"}
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
_MODEL = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_TARGET = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,252})?")
_RESERVED_HEADERS = {"content-type", "content-length", "host", "transfer-encoding", "connection"}
MAX_TARGETS = 50


class NotifyConfigError(AgentError):
    """The targets file cannot be used: every problem, one per line (file:line: field: message)."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class TargetConfig:
    """One notification target. `url`: the webhook (slack, cloudevents) or the repository
    (commitStatus, "" for the followed --repo); `secrets`: every secret value of it, kept out of
    logs and errors."""

    name: str
    type: str
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    events: frozenset[str] = frozenset(EVENT_KINDS)
    models: frozenset[str] | None = None  # None: every model
    targets: frozenset[str] | None = None  # agent targets; None: every one
    forge: str | None = None
    api_url: str | None = None
    token: str = ""
    ca_file: Path | None = None
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never a secret
        return f"TargetConfig({self.name!r}, {self.type!r})"

    def wants(self, kind: str, model: str, target: str) -> bool:
        """Whether an event of `kind` about `model` ("namespace/name", "" for none) of the agent
        target `target` goes to this target. An event about no single model passes a models filter."""
        if kind not in self.events:
            return False
        if self.targets is not None and target not in self.targets:
            return False
        if self.models is None or not model:
            return True
        return model in self.models or model.partition("/")[2] in self.models


@dataclass(frozen=True)
class NotifyConfig:
    ui_url: str | None
    targets: tuple[TargetConfig, ...]


def parse_config(where: str, content: bytes, *, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """The targets of the file `where` (its `content`); NotifyConfigError naming every problem.
    `env`: where fromEnv reads (default os.environ)."""
    docs, errors = parse_yaml(where, content)
    if not errors and len(docs) != 1:
        errors.append(SpecError(where, 1, "", "expected one YAML document with `targets:`"))
    if errors:
        raise NotifyConfigError(errors)
    reader = _Reader(docs[0], os.environ if env is None else env)
    config = reader.config()
    if reader.errors:
        raise NotifyConfigError(reader.errors)
    return config


class _Reader:
    def __init__(self, doc: YamlDocument, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.errors: list[SpecError] = []

    def error(self, at: list[str | int], message: str) -> None:
        self.errors.append(self.doc.error(at, message))

    def config(self) -> NotifyConfig:
        data = self.doc.data
        if not isinstance(data, dict):
            self.error([], "expected a mapping with `targets:`")
            return NotifyConfig(None, ())
        for key in data:
            if key not in ("uiUrl", "targets"):
                self.error([key], "unknown field (expected uiUrl, targets)")
        ui_url = self.url(data.get("uiUrl"), ["uiUrl"]) if "uiUrl" in data else None
        raw = data.get("targets")
        if not isinstance(raw, list) or not raw:
            self.error(["targets"], "expected a list of one or more targets")
            return NotifyConfig(ui_url, ())
        if len(raw) > MAX_TARGETS:
            self.error(["targets"], f"{len(raw)} targets: at most {MAX_TARGETS}")
        targets: list[TargetConfig] = []
        names: set[str] = set()
        for index, item in enumerate(raw[:MAX_TARGETS]):
            target = self.target(item, ["targets", index])
            if target is None:
                continue
            if target.name in names:
                self.error(["targets", index, "name"], f"the name {target.name} is used by an earlier target")
            names.add(target.name)
            targets.append(target)
        return NotifyConfig(ui_url, tuple(targets))

    def target(self, item: Any, at: list[str | int]) -> TargetConfig | None:
        if not isinstance(item, dict):
            self.error(at, "expected a mapping (name, type, ...)")
            return None
        before = len(self.errors)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            self.error([*at, "name"], "expected a name of lower-case letters, digits, '.', '_' and '-' "
                       "(at most 63, starting and ending with a letter or digit)")
            name = ""
        kind = item.get("type")
        if kind not in TYPES:
            self.error([*at, "type"], f"expected one of {', '.join(TYPES)}")
            return None
        allowed = {"name", "type", "events", "models", "targets"}
        allowed |= {"url", "headers", "caFile"} if kind != "commitStatus" else {
            "forge", "repo", "apiUrl", "token", "caFile"}
        for key in item:
            if key not in allowed:
                self.error([*at, key], f"unknown field for type {kind} (expected {', '.join(sorted(allowed))})")
        secrets: list[str] = []
        events = self.events(item, at, kind)
        models = self.names(item, at, "models", _MODEL, "a model name or namespace/name")
        agent_targets = self.names(item, at, "targets", _TARGET, "an agent target name (the RepositoryConfig's)")
        ca_file = self.path(item.get("caFile"), [*at, "caFile"]) if "caFile" in item else None
        if kind == "commitStatus":
            forge = item.get("forge")
            if forge is not None and forge not in FORGE_KINDS:
                self.error([*at, "forge"], f"expected one of {', '.join(FORGE_KINDS)}")
                forge = None
            repo = self.url(item.get("repo"), [*at, "repo"]) if "repo" in item else ""
            api_url = self.url(item.get("apiUrl"), [*at, "apiUrl"]) if "apiUrl" in item else None
            token = self.secret(item.get("token"), [*at, "token"], plain=False) if "token" in item else ""
            if "token" not in item:
                self.error([*at, "token"], "missing: the forge API token ({fromFile: PATH} or {fromEnv: NAME})")
            secrets.append(token)
            if len(self.errors) > before:
                return None
            return TargetConfig(name, kind, url=repo or "", events=events, models=models, targets=agent_targets,
                                forge=forge, api_url=api_url, token=token, ca_file=ca_file,
                                secrets=tuple(s for s in secrets if s))
        if "url" not in item:
            self.error([*at, "url"], "missing: the receiver's URL (or {fromFile: PATH} or {fromEnv: NAME})")
            return None
        url = self.secret(item.get("url"), [*at, "url"], plain=True)
        if url and not isinstance(item.get("url"), str):
            secrets.append(url)
            url = self.url(url, [*at, "url"], shown=False) or ""
        elif url:
            url = self.url(url, [*at, "url"]) or ""
        headers: dict[str, str] = {}
        raw_headers = item.get("headers", {})
        if kind == "slack" and "headers" in item:
            self.error([*at, "headers"], "a Slack-style webhook takes no headers (its URL is its secret)")
        elif not isinstance(raw_headers, dict):
            self.error([*at, "headers"], "expected a mapping of header name to value")
        else:
            for key, value in raw_headers.items():
                if not _HEADER.fullmatch(key) or key.lower() in _RESERVED_HEADERS:
                    self.error([*at, "headers", key], "not a header the agent may set")
                    continue
                text = self.secret(value, [*at, "headers", key], plain=True)
                if text and not isinstance(value, str):
                    secrets.append(text)
                headers[key] = text
        if len(self.errors) > before:
            return None
        return TargetConfig(name, kind, url=url, headers=headers, events=events, models=models,
                            targets=agent_targets, ca_file=ca_file, secrets=tuple(s for s in secrets if s))

    def events(self, item: Mapping[str, Any], at: list[str | int], kind: str) -> frozenset[str]:
        default = frozenset(STATUS_STATES) if kind == "commitStatus" else frozenset(EVENT_KINDS)
        if "events" not in item:
            return default
        raw = item["events"]
        if not isinstance(raw, list) or not raw:
            self.error([*at, "events"], "expected a list of event kinds (default: all)")
            return default
        out: set[str] = set()
        for index, value in enumerate(raw):
            if value not in default:
                which = "an event a commit status is set on" if kind == "commitStatus" else "a known event"
                self.error([*at, "events", index], f"{_shown(value)} is not {which} "
                           f"(one of {', '.join(k for k in EVENT_KINDS if k in default)})")
            else:
                out.add(value)
        return frozenset(out)

    def names(self, item: Mapping[str, Any], at: list[str | int], key: str, pattern: re.Pattern[str],
              what: str) -> frozenset[str] | None:
        if key not in item:
            return None
        raw = item[key]
        if not isinstance(raw, list) or not raw:
            self.error([*at, key], f"expected a list (each {what}; default: all)")
            return None
        for index, value in enumerate(raw):
            if not isinstance(value, str) or not pattern.fullmatch(value):
                self.error([*at, key, index], f"{_shown(value)} is not {what}")
        return frozenset(v for v in raw if isinstance(v, str))

    def secret(self, value: Any, at: list[str | int], *, plain: bool) -> str:
        """A value written plainly (when `plain`), or read from {fromFile: PATH} / {fromEnv: NAME}."""
        if isinstance(value, str) and plain:
            if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
                self.error(at, "empty, or holds control characters")
                return ""
            return value
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("fromFile", "fromEnv"):
            self.error(at, "expected {fromFile: PATH} or {fromEnv: NAME}" + (" or a plain value" if plain else
                                                                              " (a secret is never written here)"))
            return ""
        (how, where), = value.items()
        if not isinstance(where, str) or not where:
            self.error([*at, how], "expected a file path" if how == "fromFile" else "expected a variable name")
            return ""
        if how == "fromEnv":
            text = self.env.get(where)
            if text is None:
                self.error([*at, how], f"the environment variable {where} is not set")
                return ""
            source = f"the environment variable {where}"
        else:
            try:
                text = Path(where).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = plain_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
                self.error([*at, how], f"cannot read {where} ({why})")
                return ""
            source = where
        text = text.strip()
        if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            self.error([*at, how], f"{source} is empty or holds more than one line (expected the value alone)")
            return ""
        return text

    def url(self, value: Any, at: list[str | int], *, shown: bool = True) -> str | None:
        if not isinstance(value, str):
            self.error(at, "expected an http(s) URL")
            return None
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 (a bad port raises)
        except ValueError:
            parts = None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value)):
            self.error(at, (f"{_shown(value)} is not" if shown else "the value read is not") + " an http(s) URL")
            return None
        if parts.username or parts.password:
            self.error(at, "a URL with credentials in it: " + ("read it with {fromFile: PATH} or {fromEnv: NAME}"
                       if shown else "send them as a header (headers: {Authorization: {fromFile: PATH}})"))
            return None
        return value

    def path(self, value: Any, at: list[str | int]) -> Path | None:
        if not isinstance(value, str) or not value:
            self.error(at, "expected a file path")
            return None
        if not Path(value).is_file():
            self.error(at, f"{value} is not a readable file")
            return None
        return Path(value)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return escaped(value, 60)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, (int, float)) else "a list" if isinstance(value, list) else "a mapping"
