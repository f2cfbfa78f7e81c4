"""How `agent run` chooses between one Controller and a Fleet, and where a fleet's clusters come from."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.cluster import Cluster
from agent.controller._clusters import KubeconfigClusters, SecretClusters, kubeconfig_path
from agent.controller._config import RunConfig
from agent.controller._fleet import Clusters
from agent.desired import load_desired
from agent.errors import AgentError, SourceError, ValidationFailed
from agent.source import Mirror

log = logging.getLogger("modelops.fleet")


def declares_environments(config: RunConfig) -> bool:
    """Whether the followed repo's newest commit declares environments (a Fleet then drives
    them). When it cannot be told (the remote does not answer, the commit is invalid) the agent
    runs one Controller, as for any repo, and says so."""
    try:
        if config.watch_dir is not None:
            desired = load_desired(config.watch_dir, None, resolve=False)
        else:
            mirror = Mirror(config.repo, config.branch, config.cache_dir, credentials=config.credentials)
            head = mirror.sync()
            where: Path = mirror.path / config.path if config.path else mirror.path
            desired = load_desired(where, head, resolve=False)
    except (SourceError, ValidationFailed, AgentError) as exc:
        log.warning("could not tell whether the repo declares environments (%s): running one controller",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return bool(desired.spec.environments)


def fleet_clusters(config: RunConfig) -> Clusters:
    """The contexts of the kubeconfig when one is configured (--kubeconfig, KUBECONFIG,
    ~/.kube/config); in a cluster without one, the Secrets labelled modelops.dev/cluster=true
    in the agent's namespace (the inventory namespace)."""
    if config.kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
        return KubeconfigClusters(kubeconfig_path(config.kubeconfig))
    home = Cluster.connect(None, None, timeouts=config.timeouts)
    return SecretClusters(home, config.inventory_namespace, config.cache_dir / "clusters")
