"""The one error type of agent.forge (an AgentError: the CLI reports it and exits 2)."""

from __future__ import annotations

from agent.errors import AgentError


class ForgeError(AgentError):
    """A forge API call failed; the message names forge, method, path, status and the API's message.

    `status` is the HTTP status (None when no answer came: connection, TLS or timeout errors).
    The token is never part of the message.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
