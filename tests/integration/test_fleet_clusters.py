"""The session's fleet (staging + prod-1 + prod-2): each context of the one kubeconfig reaches
its own cluster, and one member's apiserver hung (SIGSTOP) or down (stopped) leaves the others
serving and comes back on its data. Real control planes only."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from devenv import cluster as dc
from tests.integration._fleet import FleetClusters

pytestmark = pytest.mark.integration

_TIMEOUT = 30  # seconds for one API call to a serving member, on a loaded machine


def _address(fleet: FleetClusters, name: str) -> tuple[str, int]:
    url = urllib.parse.urlsplit(fleet.info[name].server)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def _tls_handshake(fleet: FleetClusters, name: str, timeout: float) -> str:
    """"answered" (TLS handshake done), "refused" (no listener), or "hung" (TCP accepted by the
    kernel, then no answer within timeout)."""
    context = ssl.create_default_context(cafile=str(fleet.info[name].ca_file))
    try:
        sock = socket.create_connection(_address(fleet, name), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        try:
            with context.wrap_socket(sock, server_hostname=_address(fleet, name)[0]):
                return "answered"
        except TimeoutError:
            return "hung"


def _own_client(fleet: FleetClusters, name: str) -> client.ApiClient:
    """A client from the member's own one-context kubeconfig: not through the merged file."""
    return config.new_client_from_config(config_file=str(fleet.info[name].kubeconfig))


def _put(api: client.ApiClient, name: str, value: str) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"v": value}),
        _request_timeout=_TIMEOUT)


def _names(api: client.ApiClient, prefix: str) -> set[str]:
    items = client.CoreV1Api(api).list_namespaced_config_map("default", _request_timeout=_TIMEOUT).items
    return {cm.metadata.name for cm in items if cm.metadata.name.startswith(prefix)}


def _clean(fleet: FleetClusters, prefix: str) -> None:
    """Delete this test's ConfigMaps (staging is every test's cluster)."""
    for name in fleet.names:
        core = client.CoreV1Api(fleet.api(name))
        for found in _names(fleet.api(name), prefix):
            core.delete_namespaced_config_map(found, "default", _request_timeout=_TIMEOUT)


def test_each_context_reaches_its_own_cluster(fleet_clusters: FleetClusters) -> None:
    fleet = fleet_clusters
    doc = yaml.safe_load(fleet.kubeconfig.read_text())
    assert [c["name"] for c in doc["contexts"]] == ["staging", "prod-1", "prod-2"]
    assert doc["current-context"] == "staging"
    assert stat.S_IMODE(fleet.kubeconfig.stat().st_mode) == 0o600
    assert len({fleet.info[n].server for n in fleet.names}) == 3

    prefix = f"fleet-{uuid.uuid4().hex[:8]}-"
    try:
        for name in fleet.names:
            _put(fleet.api(name), prefix + name, name)
        for name in fleet.names:
            with _own_client(fleet, name) as own:
                assert _names(own, prefix) == {prefix + name}, name
        # as a kubectl user switches between them
        kubectl = Path(sys.executable).parent / "kubectl"
        for name in fleet.names:
            done = subprocess.run([str(kubectl), "--kubeconfig", str(fleet.kubeconfig), "--context", name, "get",
                                   "configmaps", "-n", "default", "-o", "json"],
                                  capture_output=True, text=True, timeout=120, check=True)
            seen = {i["metadata"]["name"] for i in json.loads(done.stdout)["items"]}
            assert {n for n in seen if n.startswith(prefix)} == {prefix + name}, name
    finally:
        _clean(fleet, prefix)


def test_one_member_hung_or_down_leaves_the_others_serving(fleet_clusters: FleetClusters) -> None:
    fleet = fleet_clusters
    prefix = f"fault-{uuid.uuid4().hex[:8]}-"
    try:
        _put(fleet.api("prod-2"), prefix + "before", "kept")
        assert _tls_handshake(fleet, "prod-1", timeout=_TIMEOUT) == "answered"

        with fleet.paused("prod-1"):
            assert dc.status(fleet.directory("prod-1"))["paused"] == ["kube-apiserver"]
            assert _tls_handshake(fleet, "prod-1", timeout=3) == "hung"
            _put(fleet.api("prod-2"), prefix + "while-prod-1-hung", "x")
            _put(fleet.api("staging"), prefix + "while-prod-1-hung", "x")
        assert _names(fleet.api("prod-1"), prefix) == set()  # the same client answers again

        pid_before = dc.status(fleet.directory("prod-2"))["pids"]
        assert isinstance(pid_before, dict)
        began = time.monotonic()
        with fleet.stopped("prod-2"):
            stop = time.monotonic() - began
            state = dc.status(fleet.directory("prod-2"))
            assert state["running"] == {**{n: True for n in pid_before}, "kube-apiserver": False}
            assert _tls_handshake(fleet, "prod-2", timeout=_TIMEOUT) == "refused"
            _put(fleet.api("prod-1"), prefix + "while-prod-2-down", "x")
            began = time.monotonic()
        restart = time.monotonic() - began
        pids_after = dc.status(fleet.directory("prod-2"))["pids"]
        assert isinstance(pids_after, dict)
        # only the apiserver is new; it serves the data written before it stopped, on the same server
        assert {n for n in pids_after if pids_after[n] != pid_before[n]} == {"kube-apiserver"}
        assert _names(fleet.api("prod-2"), prefix) == {prefix + "before", prefix + "while-prod-1-hung"}
        assert dc.status(fleet.directory("prod-2"))["ready"] is True
        assert _names(fleet.api("staging"), prefix) == {prefix + "while-prod-1-hung"}
        assert _names(fleet.api("prod-1"), prefix) == {prefix + "while-prod-2-down"}

        print(f"fleet: 2 production clusters started in parallel in {fleet.started_seconds:.1f} s; "
              f"stop_apiserver took {stop:.1f} s, start_apiserver {restart:.1f} s; "
              f"RSS of one cluster's processes: {fleet.rss_mib('prod-1'):.0f} MiB")
    finally:
        _clean(fleet, prefix)
