"""The one exception type `devenv cluster` raises, so callers can catch it precisely."""

from __future__ import annotations

from agent.errors import AgentError


class DevclusterError(AgentError):
    """The local control plane could not be started, checked or stopped."""
