"""`--notify`: the notification targets, opened into a Sink (agent.notify.Notifier)."""

from __future__ import annotations

from typing import Any

from agent.errors import AgentError
from agent.notify._event import Sink


def open_notifier(source: str, *, cluster: Any, metrics: Any, ui_url: str | None) -> Sink:
    """The Sink of `source` (a file, or secret:NAMESPACE/NAME read with `cluster`); `metrics`
    counts deliveries and drops; links point at `ui_url`."""
    raise AgentError(f"--notify {source}: notifications are not available in this build")
