"""A fleet of local clusters: staging and a two-cluster production, one kubeconfig for all.

`devenv fleet up --dir D` starts each member under D/<name> (in parallel: a cluster's start is
mostly waiting) and writes D/kubeconfig with one context per member, named after it, as a
kubectl user keeps several clusters. The environments' docs and demo use it; the integration
tests' `fleet_clusters` fixture starts members the same way (`start`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv import cluster
from devenv.cluster import ClusterInfo, DevclusterError

NAMES = ("staging", "prod-1", "prod-2")
KUBECONFIG = "kubeconfig"


@dataclass(frozen=True)
class Fleet:
    """The running members (in the kubeconfig's order) and the kubeconfig naming them."""

    directory: Path
    kubeconfig: Path
    clusters: dict[str, ClusterInfo]
    seconds: float  # how long the start took


def start(members: Mapping[str, Path], timeout: float | None = None) -> dict[str, ClusterInfo]:
    """`cluster.up` every member directory, each in its own thread; their infos by name.

    If one fails the others still finish (and stay up: `down` stops them); the error names each
    failed member. Interrupted (Ctrl-C), it lets every start end, then stops them all.
    """
    if not members:
        return {}
    cluster.binaries()  # once, before the threads (a cold build is minutes)
    pool = ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="fleet-up")
    futures: dict[str, Future[ClusterInfo]] = {}
    try:
        for name, directory in members.items():
            futures[name] = (pool.submit(cluster.up, directory) if timeout is None else
                             pool.submit(cluster.up, directory, timeout))
        for future in futures.values():
            future.exception()  # waits; the results are read below
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for directory in members.values():
            with contextlib.suppress(DevclusterError):
                cluster.down(directory)
        raise
    pool.shutdown(wait=True)
    failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
    if failed:
        raise DevclusterError("; ".join(f"cluster {name} did not start: {err}" for name, err in failed.items()))
    return {name: f.result() for name, f in futures.items()}


def stop(members: Mapping[str, Path]) -> None:
    """`cluster.down` every member directory, in parallel (each waits for its processes to end)."""
    with ThreadPoolExecutor(max_workers=max(len(members), 1), thread_name_prefix="fleet-down") as pool:
        futures = {name: pool.submit(cluster.down, directory) for name, directory in members.items()}
    failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
    if failed:
        raise DevclusterError("; ".join(f"cluster {name} did not stop: {err}" for name, err in failed.items()))


def _members(directory: Path, names: Sequence[str]) -> dict[str, Path]:
    if len(set(names)) != len(names) or not names:
        raise DevclusterError(f"a fleet needs distinct member names, not {', '.join(names) or 'none'}")
    return {name: directory.resolve() / name for name in names}


def up(directory: Path, names: Sequence[str] = NAMES) -> Fleet:
    """Start (or reuse) each member under directory/<name>; write directory/kubeconfig."""
    members = _members(directory, names)
    began = time.monotonic()
    try:
        infos = start(members)
    except DevclusterError as err:
        raise DevclusterError(f"{err}\n`devenv fleet down --dir {directory}` stops the clusters that did start") from err
    kubeconfig = cluster.write_kubeconfig(directory.resolve() / KUBECONFIG, infos)
    return Fleet(directory.resolve(), kubeconfig, infos, time.monotonic() - began)


def down(directory: Path, names: Sequence[str] = NAMES) -> None:
    """Stop every member (no process left, logs kept) and remove the fleet's kubeconfig."""
    stop(_members(directory, names))
    (directory.resolve() / KUBECONFIG).unlink(missing_ok=True)


def status(directory: Path, names: Sequence[str] = NAMES) -> dict[str, Any]:
    """ready (every member is), the kubeconfig, and per member: its context, ready, paused
    processes, server and directory."""
    kubeconfig = directory.resolve() / KUBECONFIG
    clusters: list[dict[str, object]] = []
    for name, member in _members(directory, names).items():
        state = cluster.status(member)
        paused = state.get("paused")
        clusters.append({
            "name": name,
            "ready": bool(state.get("ready")),
            "server": str(state.get("server", "")),
            "paused": [str(p) for p in paused] if isinstance(paused, list) else [],
            "directory": str(member),
        })
    return {
        "ready": all(c["ready"] for c in clusters) and kubeconfig.is_file(),
        "directory": str(directory.resolve()),
        "kubeconfig": str(kubeconfig) if kubeconfig.is_file() else "",
        "clusters": clusters,
    }
