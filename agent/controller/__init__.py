"""The in-cluster controller: `agent run` (the loop, its HTTP surface and its metrics)."""

from agent.controller._config import RunConfig, describe
from agent.controller._http import HttpServer, parse_http_addr
from agent.controller._loop import Controller
from agent.controller._metrics import Metrics
from agent.controller._webhook import WebhookResult, read_webhook_secret, verify_and_parse

__all__ = ["Controller", "HttpServer", "Metrics", "RunConfig", "WebhookResult", "describe", "parse_http_addr",
           "read_webhook_secret", "verify_and_parse"]
