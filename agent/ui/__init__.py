"""The read-only web UI served by `agent run`: the board the controller publishes to, and the
app that renders it (overview, model pages, the audit trail). See docs/ui.md."""

from agent.ui._app import CSP, Request, Response, UiApp
from agent.ui._auth import Auth, load_auth
from agent.ui._board import Board, Key, Published
from agent.ui._chart import Chart, ChartSource, draw
from agent.ui._links import ForgeLinks, forge_links, safe_url

__all__ = ["CSP", "Auth", "Board", "Chart", "ChartSource", "ForgeLinks", "Key", "Published", "Request", "Response",
           "UiApp", "draw", "forge_links", "load_auth", "safe_url"]
