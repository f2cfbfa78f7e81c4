"""What each kind of target receives for an Event (documented with examples in
docs/notifications.md): a Slack-compatible message, a CloudEvents 1.0 structured event, a
commit status. Pure: no I/O."""

from __future__ import annotations

import datetime
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

from agent.notify._config import STATUS_STATES
from agent.notify._event import Event

SPEC_VERSION = "1.0"
TYPE_PREFIX = "dev.modelops."
DESCRIPTION_LIMIT = 140

# a symbol beside each kind, so a message reads without colour
_SYMBOLS = {"commit-pending": "⏳", "commit-applied": "✅", "commit-failed": "❌", "commit-invalid": "⛔",
            "drift-detected": "⚠️", "drift-healed": "🔧", "rollout-started": "🚀", "rollout-step": "➡️",
            "rollout-rolled-back": "↩️", "rollout-succeeded": "✅", "registry-moved": "📦",
            "registry-refused": "⛔", "promotion-opened": "🔀"}


def event_type(kind: str) -> str:
    """The CloudEvents type of an Event kind: its first word is the subject, the rest what
    happened (commit-applied -> dev.modelops.commit.applied, rollout-rolled-back ->
    dev.modelops.rollout.rolled-back)."""
    subject, _, what = kind.partition("-")
    return f"{TYPE_PREFIX}{subject}.{what}"


def rfc3339(when: float) -> str:
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ui_link(ui_url: str | None, event: Event) -> str:
    """The web UI page of the event: its model's page (for its target and cluster), else the
    overview; "" without a UI address."""
    if not ui_url:
        return ""
    root = ui_url.rstrip("/")
    if not event.model or "/" not in event.model:
        return root + "/"
    namespace, _, name = event.model.partition("/")
    query = {"target": event.target, **({"cluster": event.cluster} if event.cluster else {})}
    path = f"/models/{urllib.parse.quote(namespace, safe='')}/{urllib.parse.quote(name, safe='')}"
    return f"{root}{path}?{urllib.parse.urlencode(query)}"


def where(event: Event) -> str:
    """The agent target, with the fleet member's environment/cluster when there is one."""
    return f"{event.target} ({event.environment}/{event.cluster})" if event.cluster else event.target


def plain(value: Any, depth: int = 0) -> Any:
    """`value` as JSON can hold it: mappings, lists, strings, finite numbers, booleans, null;
    anything else as text, a non-finite number as null."""
    if depth > 20:
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def event_data(event: Event) -> dict[str, Any]:
    """The Event's fields as JSON (a CloudEvent's `data`)."""
    return {"id": event.id, "kind": event.kind, "target": event.target, "commit": event.commit,
            "model": event.model, "message": event.message, "environment": event.environment,
            "cluster": event.cluster, "time": rfc3339(event.time), "details": plain(event.details)}


def cloudevent(event: Event) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured JSON mode (Content-Type application/cloudevents+json)."""
    return {"specversion": SPEC_VERSION, "id": event.id, "source": f"/modelops-agent/{event.target}",
            "type": event_type(event.kind), "time": rfc3339(event.time),
            "subject": event.model or event.commit or event.target,
            "datacontenttype": "application/json", "data": event_data(event)}


def mrkdwn(text: str) -> str:
    """Text that came from elsewhere (a commit message, a model name) as Slack shows it
    literally: &, < and > escaped, so it cannot make a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(event: Event, ui_url: str | None) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: `text` (notifications, and clients without
    blocks) and `blocks` (the message, then its context: model, commit, link to the UI)."""
    symbol = _SYMBOLS.get(event.kind, "•")
    title = event.kind.replace("-", " ")
    text = f"{symbol} *{mrkdwn(title)}* · {mrkdwn(where(event))}: {mrkdwn(event.message)}"
    context: list[str] = []
    if event.model:
        context.append(f"model `{mrkdwn(event.model)}`")
    if event.commit:
        context.append(f"commit `{mrkdwn(event.commit[:12])}`")
    author = event.details.get("author") if isinstance(event.details, Mapping) else None
    if isinstance(author, str) and author:
        context.append(f"by {mrkdwn(author[:100])}")
    link = ui_link(ui_url, event)
    if link:
        context.append(f"<{mrkdwn(link)}|open in the modelops UI>")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}]
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)[:2900]}]})
    return {"text": text[:2900], "blocks": blocks}


def status_context(event: Event) -> str:
    """modelops/<target>, and /<cluster> for a fleet member (one status per cluster)."""
    return f"modelops/{event.target}" + (f"/{event.cluster}" if event.cluster else "")


def commit_status(event: Event, ui_url: str | None) -> tuple[str, str, str, str] | None:
    """(state, context, description, link) of the commit status an Event sets; None when it sets none."""
    state = STATUS_STATES.get(event.kind)
    if state is None or not event.commit:
        return None
    line = " ".join(event.message.split())
    if len(line) > DESCRIPTION_LIMIT:
        line = line[: DESCRIPTION_LIMIT - 1] + "…"
    return state, status_context(event), line, ui_link(ui_url, event)
