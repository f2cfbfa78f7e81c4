"""The in-cluster controller: `agent run` (the loop, its HTTP surface and its metrics), and the
Fleet that runs one loop per cluster of a repo's environments."""

from agent.controller._config import RunConfig, describe
from agent.controller._fleet import Fleet
from agent.controller._fleet_metrics import FleetMetrics
from agent.controller._fleet_setup import declares_environments, fleet_clusters
from agent.controller._http import HttpServer, parse_http_addr
from agent.controller._loop import Controller
from agent.controller._memory import settle
from agent.controller._metrics import Metrics
from agent.controller._notices import PassNotices, publish
from agent.controller._serve import serve, ui_app
from agent.controller._waves import Progress, Stop, Wave, watched_models
from agent.controller._webhook import WebhookResult, read_webhook_secret, verify_and_parse

__all__ = ["Controller", "Fleet", "FleetMetrics", "HttpServer", "Metrics", "PassNotices", "Progress", "RunConfig", "Stop",
           "Wave", "WebhookResult", "declares_environments", "describe", "fleet_clusters", "parse_http_addr", "publish",
           "read_webhook_secret", "serve", "settle", "ui_app", "verify_and_parse", "watched_models"]
