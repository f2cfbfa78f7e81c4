"""The cluster flags of a command (--kubeconfig, --context, the timeouts) -> a connection; a
cluster of an environment by its name (a context of the kubeconfig, as a kubectl user keeps them).
Imported only by the commands that talk to a cluster: it loads the kubernetes client."""

from __future__ import annotations

import argparse
import os

import yaml

from agent.cluster import Cluster, Timeouts
from agent.errors import AgentError

# a fleet command asks each cluster in turn: one that does not answer must not hold the others long
FLEET_CONNECT, FLEET_READ, FLEET_BUDGET = 3.0, 10.0, 6.0


def timeouts(args: argparse.Namespace) -> Timeouts:
    return Timeouts.from_env(args.connect_timeout, args.request_timeout, args.retry_budget)


def connect(args: argparse.Namespace) -> Cluster:
    """The cluster of --kubeconfig and --context (a context manager: closed on exit)."""
    return Cluster.connect(args.kubeconfig, args.context, timeouts=timeouts(args))


def connect_named(args: argparse.Namespace, name: str) -> Cluster:
    """Cluster `name` of an environment: that context of --kubeconfig (else $KUBECONFIG, else
    ~/.kube/config), with short timeouts unless the flags or AGENT_* variables set them. A
    context the kubeconfig lacks is an error naming the contexts it has."""
    where, files = _kubeconfig_files(args.kubeconfig)
    contexts = _contexts(files)
    if name not in contexts:
        known = ", ".join(contexts) or "none"
        raise AgentError(f"cluster {name!r} is not a context of the kubeconfig ({where}; contexts: {known})")
    fleet = Timeouts.from_env(args.connect_timeout or (None if os.environ.get("AGENT_CONNECT_TIMEOUT") else FLEET_CONNECT),
                              args.request_timeout or (None if os.environ.get("AGENT_REQUEST_TIMEOUT") else FLEET_READ),
                              args.retry_budget or (None if os.environ.get("AGENT_RETRY_BUDGET") else FLEET_BUDGET))
    return Cluster.connect(args.kubeconfig, name, timeouts=fleet)


def _kubeconfig_files(kubeconfig: str | None) -> tuple[str, list[str]]:
    if kubeconfig:
        return f"--kubeconfig {kubeconfig}", [kubeconfig]
    if os.environ.get("KUBECONFIG"):
        raw = os.environ["KUBECONFIG"]
        return f"KUBECONFIG={raw}", [f for f in raw.split(os.pathsep) if f]
    return "~/.kube/config", [os.path.expanduser("~/.kube/config")]


def _contexts(files: list[str]) -> list[str]:
    """The context names of the kubeconfig files (unreadable ones contribute none; connecting
    then says why)."""
    names: list[str] = []
    for f in files:
        try:
            with open(os.path.expanduser(f), encoding="utf-8") as stream:
                data = yaml.safe_load(stream)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        entries = data.get("contexts") if isinstance(data, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names
