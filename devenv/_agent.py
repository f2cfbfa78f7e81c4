"""Every call the demos make into the agent's library and CLI, in one place.

The demos show the agent at work: they load a model repo, apply it, wait for it to settle, plan a
change against the cluster, and run `agent promote` and `agent pr-comment` as a user would. Each of
those goes through one function here, so pointing the demos at another entry of the agent (one
engine for plan and sync, a promotion library) is an edit of this module alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import cli
from agent.cluster import Cluster
from agent.pipeline import Desired, load_desired
from agent.plan import Plan
from agent.reconcile import Options, observe, plan_against, reconcile
from agent.status import wait_healthy
from agent.sync import Outcome

__all__ = ["Desired", "Outcome", "apply", "load", "plan", "run_cli", "settle"]


def load(repo: Path) -> Desired:
    """The repo's HEAD, read, validated and rendered (`agent validate`/`render`)."""
    return load_desired(repo, "HEAD")


def apply(desired: Desired, cluster: Cluster, audit_log: Path) -> Outcome:
    """`agent apply --audit-log AUDIT_LOG`: the cluster made to match `desired`, audited."""
    return reconcile(desired, cluster, Options(audit_log=audit_log))


def settle(desired: Desired, cluster: Cluster, timeout: float) -> dict[str, Any]:
    """`agent status` once every model settled (or `timeout` seconds passed): its document."""
    return wait_healthy(desired, cluster, timeout=timeout)


def plan(desired: Desired, cluster: Cluster) -> Plan:
    """`agent diff` against the cluster: the live plan of `desired`."""
    return plan_against(cluster, desired, observe(cluster, desired.objects, desired.spec.config.name))


def run_cli(argv: list[str]) -> int:
    """One `agent` command in this process (`promote ... --open-pr`, `pr-comment ...`): its exit code."""
    return cli.main(argv)
