"""Starting the controller's (or the fleet's) HTTP servers from its RunConfig: the endpoints of
agent.controller._http on --http-addr, and the web UI (agent.ui) at / of it or on its own
--ui-addr."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.controller._config import RunConfig
from agent.controller._http import Check, HttpServer, OnAlerts, OnPush, parse_http_addr
from agent.controller._metrics import Metrics
from agent.controller._webhook import read_webhook_secret
from agent.ui import Board, UiApp, forge_links, load_auth

log = logging.getLogger("agent.controller.http")


def ui_app(config: RunConfig, board: Board) -> UiApp | None:
    """The web UI over `board` when `config` turns it on and names an address to serve it on;
    the auth file is read here, once (AgentError naming the file and field when it is bad)."""
    if not config.ui or not (config.http_addr or config.ui_addr):
        return None
    auth = load_auth(config.ui_auth_file) if config.ui_auth_file is not None else None
    forge = forge_links(config.repo, config.forge) if config.watch_dir is None else None
    return UiApp(board, auth=auth, forge=forge)


def serve(addr: str | None, webhook_secret_file: Path | None, branch: str, *, health: Check, ready: Check,
          metrics: Metrics, on_push: OnPush, on_alerts: OnAlerts, ui: UiApp | None = None,
          ui_addr: str | None = None) -> HttpServer | None:
    """The controller's (or the fleet's) server on `addr` (None or "": none), started:
    /healthz /readyz /metrics, and /webhook /alerts when a secret file is given (read once);
    `ui` at every other path, or on a server of its own at `ui_addr` (stopped with this one;
    the one returned when there is no `addr`)."""
    ui_server: HttpServer | None = None
    if ui is not None and ui_addr:
        host, port = parse_http_addr(ui_addr)
        ui_server = HttpServer(host, port, health=health, ready=ready, ui=ui, ui_only=True)
        ui_server.start()
        log.info("serving the web UI on %s", ui_server.url)
    if not addr:
        if ui_server is None and ui is not None:
            ui.close()
        return ui_server
    host, port = parse_http_addr(addr)
    try:
        secret = read_webhook_secret(webhook_secret_file) if webhook_secret_file is not None else None
        http = HttpServer(host, port, health=health, ready=ready, metrics=metrics, webhook_secret=secret,
                          branch=branch, on_push=on_push if secret else None,
                          on_alerts=on_alerts if secret else None,  # Monitor actions
                          ui=None if ui_server is not None else ui)
        http.ui_server = ui_server
        http.start()
    except BaseException:
        if ui_server is not None:
            ui_server.stop()
        elif ui is not None:
            ui.close()
        raise
    log.info("serving /healthz /readyz /metrics%s%s on %s", " /webhook /alerts" if secret else "",
             " and the web UI at /" if ui is not None and ui_server is None else "", http.url)
    return http
