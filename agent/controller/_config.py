"""`RunConfig`: everything `agent run` takes, and how it is described in logs and the last-sync mark."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from agent.cluster import FIELD_MANAGER, INVENTORY_NAMESPACE, Timeouts
from agent.controller._gate import DriftPolicy
from agent.controller._registry import SyncAs
from agent.engine import cache_root
from agent.source import Credentials, redact_url


def _default_cache_dir() -> Path:
    return cache_root() / "controller"


@dataclass
class RunConfig:
    """Everything `agent run` takes (each flag also from an AGENT_* variable, see cli.py)."""

    repo: str
    branch: str = "main"
    path: str = ""
    interval: float = 60.0
    resync: float = 600.0
    kubeconfig: str | None = None
    context: str | None = None
    http_addr: str | None = ":8080"
    audit_log: Path | None = None
    leader_elect: bool = False
    lease_name: str | None = None
    lease_namespace: str = INVENTORY_NAMESPACE
    inventory_namespace: str = INVENTORY_NAMESPACE
    drift_policy: DriftPolicy = "heal"
    prune: bool | None = None
    watch_dir: Path | None = None
    webhook_secret_file: Path | None = None
    cache_dir: Path = field(default_factory=_default_cache_dir)
    credentials: Credentials | None = None
    timeouts: Timeouts | None = None
    lease_duration: int = 15
    # progressive delivery (spec.rollout): where the analysis queries go, and the forge that
    # receives a rollout's pull request (onSuccess: pullRequest, revertPullRequest)
    prometheus_url: str | None = None
    forge: str | None = None
    forge_api_url: str | None = None
    # model registries: how often a commit's aliases/stages are resolved again, and
    # the alias whose moves become promotion PRs for models that pin a registry version
    registry_interval: float = 300.0
    registry_sync_alias: str | None = None
    registry_sync_as: SyncAs = "canary"
    registry_sync_traffic: int = 10
    verify_signatures: Path | None = None  # only commits signed by a key this file allows apply
    sync_mark_every: float = 300.0  # seconds: how stale the inventory's last-sync mark may get when nothing changes
    # a fleet member that is not the last cluster of its environment's wave: a rollout that
    # succeeds there hands the change on and does not write its outcome to Git
    writes_rollout_success: bool = True
    # the web UI (agent.ui): served at / of http_addr, or of its own ui_addr; "" ui_addr with no
    # http_addr: no UI. ui_auth_file: a bearer token or basic credentials every page then needs.
    ui: bool = True
    ui_addr: str | None = None
    ui_auth_file: Path | None = None
    ui_url: str | None = None  # the UI as people reach it (notifications link to it)
    # notifications (agent.notify): a file of targets, or secret:NAMESPACE/NAME (key notify.yaml)
    notify: str | None = None
    identity: str = field(default_factory=lambda: f"{FIELD_MANAGER}@{socket.gethostname()}/{os.getpid()}")


def following(config: RunConfig) -> str:
    """What the controller follows, for the last-sync mark: a URL without credentials @branch."""
    if config.watch_dir is not None:
        return f"{config.watch_dir} (working copy)"
    return f"{redact_url(config.repo)}@{config.branch}" + (f"/{config.path}" if config.path else "")


def describe(config: RunConfig) -> str:
    source = f"{config.watch_dir} (working copy)" if config.watch_dir else f"{redact_url(config.repo)}@{config.branch}"
    verify = f", only commits signed by a key of {config.verify_signatures}" if config.verify_signatures else ""
    return f"{source}{'/' + config.path if config.path else ''}, every {config.interval:g} s{verify}"
