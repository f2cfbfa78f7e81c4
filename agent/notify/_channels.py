"""How one target is reached: a webhook (Slack-compatible or CloudEvents) over agent._http's
Transport, or the forge's commit status API. A channel sends one Event once; retrying is the
notifier's. Every failure is a DeliveryError whose text has the target's secrets scrubbed out."""

from __future__ import annotations

import json
import re
from typing import Protocol

from agent._http import Transport, TransportError, scrub, secret_forms
from agent.errors import AgentError
from agent.forge import Forge, ForgeError, api_message
from agent.notify._config import TargetConfig
from agent.notify._event import Event
from agent.notify._payloads import cloudevent, commit_status, slack_message

TIMEOUT = 5.0  # seconds for one request to a target
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NOT_RETRIED = ("config", "certificate", "tls", "redirect", "too-large")


def retry_after(value: str | None) -> float | None:
    """A Retry-After header given in seconds (a date, or anything else, is not used)."""
    text = (value or "").strip()
    return float(text) if text.isdigit() and len(text) <= 6 else None


class DeliveryError(Exception):
    """One try failed. `retry`: worth trying again (no answer, 429, 5xx); str() holds no secret."""

    def __init__(self, text: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry = retry
        self.retry_after = retry_after  # seconds the receiver asked to wait (429 Retry-After)


class Channel(Protocol):
    name: str
    type: str

    def accepts(self, event: Event) -> bool: ...

    def deliver(self, event: Event) -> None: ...

    def scrub(self, text: str) -> str: ...

    def close(self) -> None: ...


class WebhookChannel:
    """POST the Event as a Slack-compatible message or a CloudEvent to the target's URL."""

    def __init__(self, config: TargetConfig, ui_url: str | None, *, timeout: float = TIMEOUT) -> None:
        self.name = config.name
        self.type = config.type
        self.config = config
        self.ui_url = ui_url
        self._forms = secret_forms(config.secrets)
        try:
            self._http = Transport(config.url, timeout=timeout, ca_file=config.ca_file, headers=dict(config.headers),
                                   secrets=config.secrets, max_body=64 * 1024)
        except TransportError as exc:
            raise AgentError(scrub(f"--notify: target {self.name}: {exc}", self._forms)) from None

    def accepts(self, event: Event) -> bool:
        return self.config.wants(event.kind, event.model, event.target)

    def scrub(self, text: str) -> str:
        return scrub(self._http.scrub(text), self._forms)

    def payload(self, event: Event) -> tuple[bytes, str]:
        if self.type == "slack":
            return json.dumps(slack_message(event, self.ui_url), ensure_ascii=False).encode(), "application/json"
        body = json.dumps(cloudevent(event), ensure_ascii=False, allow_nan=False).encode()
        return body, "application/cloudevents+json; charset=utf-8"

    def deliver(self, event: Event) -> None:
        body, content_type = self.payload(event)
        try:
            reply = self._http.send("POST", self.config.url, body=body, headers={"Content-Type": content_type})
        except TransportError as exc:
            raise DeliveryError(self.scrub(str(exc)), retry=exc.kind not in _NOT_RETRIED) from None
        if reply.status >= 300:
            text = self.scrub(f"HTTP {reply.status}: {api_message(reply.body)[:200]}")
            raise DeliveryError(text, retry=reply.status == 429 or reply.status >= 500,
                                retry_after=retry_after(reply.headers.get("Retry-After")) if reply.status == 429 else None)

    def close(self) -> None:
        return None


class StatusChannel:
    """Set the commit status of the Event's commit on the forge (agent.forge set_status). A
    restarted agent does not say a settled commit again: the controller does not announce the
    commit its inventory's last-sync mark records (agent.controller PassNotices), so a rollback's
    failure stands."""

    def __init__(self, config: TargetConfig, ui_url: str | None, forge: Forge) -> None:
        self.name = config.name
        self.type = config.type
        self.config = config
        self.ui_url = ui_url
        self.forge = forge
        self._forms = secret_forms(config.secrets)

    def accepts(self, event: Event) -> bool:
        return (self.config.wants(event.kind, event.model, event.target) and bool(_FULL_SHA.fullmatch(event.commit))
                and commit_status(event, self.ui_url) is not None)

    def scrub(self, text: str) -> str:
        return scrub(text, self._forms)

    def deliver(self, event: Event) -> None:
        status = commit_status(event, self.ui_url)
        if status is None:
            return
        state, context, description, link = status
        try:
            self.forge.set_status(event.commit, state, context, description, link)
        except ForgeError as exc:
            retry = exc.status is None or exc.status == 429 or exc.status >= 500
            raise DeliveryError(self.scrub(str(exc)), retry=retry) from None

    def close(self) -> None:
        self.forge.close()
