"""The session's fleet of local clusters for the environments' tests: staging (the session's
`devcluster`) and a two-cluster production (prod-1, prod-2), one kubeconfig with a context each.

`fleet_clusters` (conftest) yields a FleetClusters. A test that hangs or stops a member's
apiserver uses `paused(name)` / `stopped(name)`, which bring it back however the block ends:
staging is the cluster every other test of the session uses.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from devenv import cluster as dc
from devenv import fleet
from devenv.cluster import ClusterInfo

NAMES = fleet.NAMES  # ("staging", "prod-1", "prod-2"): staging first, then production's wave order


@dataclass
class FleetClusters:
    kubeconfig: Path  # one context per member, named after it (current: staging)
    info: dict[str, ClusterInfo]  # as started (pids change when a member's apiserver is restarted)
    started_seconds: float  # to start the members beyond staging, in parallel
    names: tuple[str, ...] = NAMES
    _clients: dict[str, client.ApiClient] = field(default_factory=dict)

    def api(self, name: str) -> client.ApiClient:
        """Admin client of one member through its context of the merged kubeconfig (closed at
        the session's end)."""
        if name not in self._clients:
            self._clients[name] = config.new_client_from_config(config_file=str(self.kubeconfig), context=name)
        return self._clients[name]

    def directory(self, name: str) -> Path:
        return self.info[name].directory

    def pause(self, name: str) -> None:
        """Hang the member's apiserver (SIGSTOP): connections accepted, never answered."""
        dc.pause_apiserver(self.directory(name))

    def resume(self, name: str) -> None:
        """SIGCONT; returns when it is ready again."""
        dc.resume_apiserver(self.directory(name))

    def stop(self, name: str) -> None:
        """Terminate the member's apiserver (reaped): connections refused; etcd and data stay."""
        dc.stop_apiserver(self.directory(name))

    def start(self, name: str) -> None:
        """Start its apiserver again on the same port and data; returns when it is ready."""
        dc.start_apiserver(self.directory(name))

    @contextmanager
    def paused(self, name: str) -> Iterator[None]:
        self.pause(name)
        try:
            yield
        finally:
            self.resume(name)

    @contextmanager
    def stopped(self, name: str) -> Iterator[None]:
        self.stop(name)
        try:
            yield
        finally:
            self.start(name)

    def rss_mib(self, name: str) -> float:
        """Resident memory of the member's processes now, in MiB."""
        pids = dc.status(self.directory(name))["pids"]
        assert isinstance(pids, dict)
        total_kib = 0
        for pid in pids.values():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib / 1024

    def close(self) -> None:
        for api in self._clients.values():
            api.close()
        self._clients.clear()


@contextmanager
def fleet_session(directory: Path, staging: ClusterInfo) -> Iterator[FleetClusters]:
    """Start the production members under directory (in parallel), write directory/kubeconfig
    with staging's context first; at the end close the clients and stop the production members
    (no process left; staging is its own fixture's)."""
    members = {name: directory / name for name in NAMES[1:]}
    try:
        began = time.monotonic()
        infos = fleet.start(members)
        seconds = time.monotonic() - began
        clusters = {NAMES[0]: staging, **infos}
        kubeconfig = dc.write_kubeconfig(directory / fleet.KUBECONFIG, clusters)
        fleet_clusters = FleetClusters(kubeconfig, clusters, seconds)
        try:
            yield fleet_clusters
        finally:
            fleet_clusters.close()
    finally:
        fleet.stop(members)
