"""The cluster flags of a command (--kubeconfig, --context, the timeouts) -> a connection.
Imported only by the commands that talk to a cluster: it loads the kubernetes client."""

from __future__ import annotations

import argparse

from agent.cluster import Cluster, Timeouts


def timeouts(args: argparse.Namespace) -> Timeouts:
    return Timeouts.from_env(args.connect_timeout, args.request_timeout, args.retry_budget)


def connect(args: argparse.Namespace) -> Cluster:
    """The cluster of --kubeconfig and --context (a context manager: closed on exit)."""
    return Cluster.connect(args.kubeconfig, args.context, timeouts=timeouts(args))
