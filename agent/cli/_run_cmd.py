"""`agent run`: the flags -> a RunConfig -> the controller, stopped by SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from agent import controller
from agent.cli._args import FORGES, env
from agent.cli._connect import timeouts
from agent.errors import AgentError
from agent.source import Credentials


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.repo and not args.watch_dir:
        raise AgentError("agent run needs --repo URL (or AGENT_REPO), or --watch-dir PATH")
    if args.forge is not None and args.forge not in FORGES:  # AGENT_FORGE is not checked by argparse
        raise AgentError(f"AGENT_FORGE={args.forge}: expected one of {', '.join(FORGES)}")
    credentials = None
    if args.git_token_file or args.git_token_env or args.ssh_key_file or args.known_hosts_file or args.git_ca_file:
        credentials = Credentials(
            token_file=Path(args.git_token_file) if args.git_token_file else None, token_env=args.git_token_env,
            ssh_key_file=Path(args.ssh_key_file) if args.ssh_key_file else None,
            known_hosts_file=Path(args.known_hosts_file) if args.known_hosts_file else None,
            ca_file=Path(args.git_ca_file) if args.git_ca_file else None)
    config = controller.RunConfig(
        repo=args.repo or str(args.watch_dir), branch=args.branch, path=args.repo_path.strip("/"),
        interval=_seconds(args.interval), resync=_seconds(args.resync), kubeconfig=args.kubeconfig,
        context=args.context, http_addr=args.http_addr or None,
        audit_log=Path(args.audit_log) if args.audit_log else None, leader_elect=args.leader_elect,
        lease_name=args.lease_name, lease_namespace=args.lease_namespace or args.inventory_namespace,
        inventory_namespace=args.inventory_namespace, drift_policy=args.drift_policy,
        prune=True if args.prune else None, watch_dir=Path(args.watch_dir) if args.watch_dir else None,
        webhook_secret_file=Path(args.webhook_secret_file) if args.webhook_secret_file else None,
        credentials=credentials, timeouts=timeouts(args), prometheus_url=args.prometheus_url or None,
        forge=args.forge or None, forge_api_url=args.forge_api_url or None,
        registry_interval=0.0 if str(args.registry_interval).strip().lower() in ("0", "off") else
        _seconds(args.registry_interval),
        registry_sync_alias=args.registry_sync_alias or None, registry_sync_as=args.registry_sync_as,
        registry_sync_traffic=_registry_sync_traffic(args),
        verify_signatures=Path(args.verify_signatures) if args.verify_signatures else None,
        ui=str(args.ui).strip().lower() not in ("off", "false", "0", "no"), ui_addr=args.ui_addr or None,
        ui_auth_file=Path(args.ui_auth_file) if args.ui_auth_file else None, ui_url=args.ui_url or None,
        notify=args.notify or None,
    )
    if args.cache_dir:
        config.cache_dir = Path(args.cache_dir)
    clusters = args.clusters if args.clusters is not None else [
        c.strip() for c in (env("CLUSTERS") or "").split(",") if c.strip()]
    running: controller.Controller | controller.Fleet
    if controller.declares_environments(config):
        running = controller.Fleet(config, only=clusters, clusters=controller.fleet_clusters(config))
    elif clusters:
        raise AgentError("--cluster NAME: the repo declares no environments (no kind: Environment); "
                         "use --context to pick the cluster")
    else:
        running = controller.Controller(config)

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("modelops.controller").info("signal %d: stopping", signum)
        running.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("modelops.controller").info("agent run: %s", controller.describe(config))
    return running.run()


def _registry_sync_traffic(args: argparse.Namespace) -> int:
    try:
        traffic = int(args.registry_sync_traffic)
    except ValueError:
        raise AgentError(f"--registry-sync-traffic {args.registry_sync_traffic!r} is not a whole percent") from None
    if not 0 <= traffic <= 100:
        raise AgentError(f"--registry-sync-traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    return traffic


def _seconds(value: str) -> float:
    """`60`, `60s`, `5m`, `1h` -> seconds."""
    text = str(value).strip().lower()
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], scale[suffix]
            break
    else:
        number, factor = text, 1.0
    try:
        seconds = float(number) * factor
    except ValueError as exc:
        raise AgentError(f"{value!r} is not a duration (60, 60s, 5m, 1h)") from exc
    if seconds <= 0:
        raise AgentError(f"{value!r}: a duration must be positive")
    return seconds
