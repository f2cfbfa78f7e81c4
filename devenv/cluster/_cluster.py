"""up / down / status of one local control plane that lives in a state directory.

Everything a cluster owns is under its directory and every port is picked free, so several
clusters (a test session's and a developer's) can run side by side.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from devenv.cluster import _admission, _bootstrap, _components, _kubeconfig, _pki, _processes, _state
from devenv.cluster._api import Api
from devenv.cluster._build import binaries
from devenv.cluster._components import Layout, Ports
from devenv.cluster._errors import DevclusterError
from devenv.cluster._kwok_stages import KSERVE_STAGES, STAGES
from devenv.cluster._server import locked
from devenv.cluster._state import State

DEFAULT_TIMEOUT = 300.0
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running dev cluster, as the admin (O=system:masters)."""

    directory: Path
    kubeconfig: Path
    server: str
    crds_dir: Path
    bin_dir: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    node_name: str
    pids: dict[str, int]
    message: str = ""  # what `up` did besides starting or reusing, e.g. a restart on old data


class _PortTaken(DevclusterError):
    """A port we picked was taken before the process bound it: worth another try."""


def _info(layout: Layout, state: State, message: str = "") -> ClusterInfo:
    pki = _pki.Pki(layout.pki)
    return ClusterInfo(
        directory=layout.directory,
        kubeconfig=layout.kubeconfig,
        server=state.server,
        crds_dir=state.cache / "crds",
        bin_dir=layout.bin_dir,
        ca_file=pki.ca_cert,
        client_cert=pki.cert("admin"),
        client_key=pki.key("admin"),
        node_name=_bootstrap.NODE_NAME,
        pids={p.name: p.pid for p in state.processes},
        message=message,
    )


def _admin_api(layout: Layout, state: State, timeout: float = 10.0) -> Api:
    pki = _pki.Pki(layout.pki)
    return Api(state.server, pki.ca_cert, pki.cert("admin"), pki.key("admin"), timeout=timeout)


def _healthy(layout: Layout, state: State) -> bool:
    if not state.processes or not all(_processes.running(p) for p in state.processes):
        return False
    try:
        return _admin_api(layout, state, timeout=3.0).readyz()
    except (OSError, DevclusterError):
        return False


def _wipe(layout: Layout, keep_logs: bool = False) -> None:
    for path in layout.owned():
        if keep_logs and path == layout.logs:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _etcd_healthy(ports: Ports) -> bool:
    conn = http.client.HTTPConnection(_components.LOOPBACK, ports.etcd_client, timeout=2.0)
    try:
        conn.request("GET", "/health")
        body = conn.getresponse().read()
    finally:
        conn.close()
    return bool(json.loads(body).get("health") == "true")


def _port_taken(state: State) -> bool:
    for proc in state.processes:
        with contextlib.suppress(OSError):
            if "address already in use" in Path(proc.log).read_text(errors="replace"):
                return True
    return False


def _write_configs(layout: Layout, state: State, pki: _pki.Pki) -> None:
    layout.run.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    _kubeconfig.write(layout.kubeconfig, state.server, pki.ca_cert, pki.cert("admin"), pki.key("admin"), "admin")
    for name in ("controller-manager", "scheduler"):
        _kubeconfig.write(
            layout.component_kubeconfig(name),
            state.server,
            pki.ca_cert,
            pki.cert(name),
            pki.key(name),
            f"system:kube-{name}",
        )
    layout.kwok_config.write_text(STAGES + "\n---\n" + KSERVE_STAGES)


def _start(layout: Layout, cache: Path, deadline: float, previous: State | None = None) -> State:
    """Start every process and prove the cluster works; on any failure stop them all.

    Without `previous` a new cluster: the directory is made afresh. With it the same cluster
    again: its certificates and etcd data kept, and its ports if they are all free.
    """
    if previous is None:
        _wipe(layout)
        pki = _pki.create(layout.pki)
        ports = Ports.from_list(_processes.free_ports(Ports.COUNT))
    else:
        pki = _pki.Pki(layout.pki)
        _pki.ensure_local_servers(pki)
        old = previous.ports
        reuse = all(old.as_dict().values()) and _processes.ports_free(list(old.as_dict().values()))
        ports = old if reuse else Ports.from_list(_processes.free_ports(Ports.COUNT))
    state = State(cache=cache, ports=ports, server=_components.server_url(ports), initialized=previous is not None)
    _state.save(layout.state, state)
    _write_configs(layout, state, pki)
    waiter = _bootstrap.Waiter(deadline, lambda: state.processes)

    def start(name: str, argv: list[str]) -> None:
        log = layout.logs / f"{name}.log"
        state.processes.append(_processes.spawn(name, argv, log, cwd=layout.run))
        _state.save(layout.state, state)

    try:
        start("etcd", _components.etcd(layout, ports))
        waiter.until("etcd /health", lambda: _etcd_healthy(ports))
        start("kube-apiserver", _components.apiserver(layout, ports, pki))
        api = _admin_api(layout, state)
        waiter.until("kube-apiserver /readyz", api.readyz, interval=0.5)
        _bootstrap.create_node(api)
        start("kube-controller-manager", _components.controller_manager(layout, ports, pki))
        start("kube-scheduler", _components.scheduler(layout, ports))
        start("kserve-webhook", _components.kserve_webhook(layout, ports, pki))
        _admission.register(api, _components.kserve_webhook_url(ports), pki.ca_cert)
        crds = _bootstrap.apply_crds(api, cache / "crds")
        # kwok resolves the kinds of its Stages at start (the InferenceService one included)
        waiter.until("CRDs Established", lambda: _bootstrap.crds_established(api, crds))
        waiter.until("the InferenceService schema in OpenAPI v3",
                     lambda: _bootstrap.openapi_published(api, ["serving.kserve.io/v1beta1"]))
        start("kwok", _components.kwok(layout))
        _bootstrap.create_check_namespace(api)
        waiter.until("KServe's admission webhook to refuse an invalid InferenceService",
                     lambda: _admission.enforced(api), interval=0.1)
        waiter.until(f"node {_bootstrap.NODE_NAME} Ready", lambda: _bootstrap.node_ready(api))
        waiter.until("the default ServiceAccount", lambda: _bootstrap.default_service_account(api))
        _bootstrap.create_check_deployment(api)
        waiter.until(
            "the check Deployment to be Available",
            lambda: _bootstrap.check_deployment_available(api),
            interval=0.5,
        )
    except BaseException as err:
        _processes.stop(state.processes)
        if _port_taken(state):
            raise _PortTaken(f"a port was taken while starting: {err}") from err
        raise
    state.ready = state.initialized = True
    _state.save(layout.state, state)
    return state


def _restartable(layout: Layout, existing: State) -> str:
    """Why the stopped cluster recorded in existing cannot be restarted on its data ("" if it can)."""
    if not existing.initialized:
        return ""
    missing = [] if (layout.etcd_data / "member").is_dir() else [f"{layout.etcd_data} (etcd data)"]
    if not _pki.Pki(layout.pki).complete():
        missing.append(f"{layout.pki} (certificates)")
    return ", ".join(missing)


def up(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> ClusterInfo:
    """Start (or reuse, if healthy) the cluster in directory; return when it is usable.

    A cluster whose processes have stopped (killed, crashed, a reboot) is restarted on its
    data: same etcd store, certificates and, if free, ports; ClusterInfo.message says so. If
    its data is gone, `up` refuses rather than hand out an empty cluster in its place.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory):
        existing = _state.load(directory / "state.json")
        previous: State | None = None
        message = ""
        stopped: list[str] = []
        if existing is not None:
            layout = Layout(directory, existing.cache / "bin")
            if existing.ready and _healthy(layout, existing):
                return _info(layout, existing)
            stopped = [p.name for p in existing.processes if not _processes.running(p)] or ["not ready"]
            _processes.stop(existing.processes)
            if existing.initialized:
                missing = _restartable(layout, existing)
                if missing:
                    raise DevclusterError(
                        f"the cluster in {directory} has stopped and its data is gone ({missing} missing); "
                        f"`devenv cluster down --dir {directory}` removes what is left, then `up` starts "
                        "a new, empty cluster"
                    )
                previous = existing
            elif existing.processes:
                message = (f"the previous `up` in {directory} never finished (stopped: {', '.join(stopped)}); "
                           "started a new, empty cluster")
        cache = binaries()
        layout = Layout(directory, cache / "bin")
        deadline = time.monotonic() + timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                state = _start(layout, cache, deadline, previous)
            except _PortTaken:
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            except DevclusterError as err:
                if previous is None:
                    # A component of a new, empty cluster that died while starting (seen once
                    # under load: etcd gone in its first second) gets one more go on new ports.
                    if isinstance(err, _bootstrap.ComponentExited) and attempt < _START_ATTEMPTS:
                        first_line = str(err).splitlines()[0]
                        message = f"the first start failed ({first_line}); started again on new ports"
                        continue
                    raise
                raise DevclusterError(
                    f"could not restart the cluster in {directory} on its data: {err}\n"
                    f"`devenv cluster down --dir {directory}` removes it; `up` then starts a new, empty one"
                ) from err
            if previous is not None:
                where = (f"on the same server {state.server}" if state.ports == previous.ports else
                         f"on new ports (the old ones are taken): server {state.server}, kubeconfig rewritten")
                message = (f"the cluster in {directory} had stopped ({', '.join(stopped)}); restarted it on "
                           f"its existing data, {where}")
            return _info(layout, state, message)
        raise AssertionError("unreachable")


def down(directory: Path) -> None:
    """Stop exactly the processes `up` recorded in directory and drop the cluster's data.

    Logs stay in directory/logs for a post-mortem.
    """
    directory = directory.resolve()
    if not directory.is_dir():
        return
    with locked(directory):
        existing = _state.load(directory / "state.json")
        if existing is not None:
            _processes.stop(existing.processes)
            layout = Layout(directory, existing.cache / "bin")
        else:
            layout = Layout(directory, directory)
        _wipe(layout, keep_logs=True)


def status(directory: Path) -> dict[str, object]:
    """ready, plus what runs where: pids, which are alive (and which of those are paused by
    SIGSTOP), ports, server, kubeconfig."""
    directory = directory.resolve()
    existing = _state.load(directory / "state.json")
    if existing is None:
        return {"ready": False, "directory": str(directory), "pids": {}, "ports": {}}
    layout = Layout(directory, existing.cache / "bin")
    alive = {p.name: _processes.running(p) for p in existing.processes}
    paused = [p.name for p in existing.processes if _processes.state_letter(p) == "T"]  # SIGSTOP
    api_ready = all(alive.values()) and not paused and _healthy(layout, existing)
    node_ready = False
    if api_ready:
        with contextlib.suppress(OSError, DevclusterError):
            node_ready = _bootstrap.node_ready(_admin_api(layout, existing, timeout=3.0))
    return {
        "ready": existing.ready and api_ready and node_ready,
        "directory": str(directory),
        "server": existing.server,
        "kubeconfig": str(layout.kubeconfig),
        "node": _bootstrap.NODE_NAME,
        "node_ready": node_ready,
        "pids": {p.name: p.pid for p in existing.processes},
        "running": alive,
        "paused": paused,
        "ports": existing.ports.as_dict(),
    }
