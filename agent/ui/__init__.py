"""The read-only web UI served by `agent run`: the board the controller publishes to, and the
app that renders it (overview, model pages, the audit trail)."""

from agent.ui._board import Board, Key, Published

__all__ = ["Board", "Key", "Published"]
