"""Faults of one cluster's kube-apiserver for tests: etcd, the other components and the data stay.

"hung" (`pause_apiserver`: SIGSTOP): the kernel still accepts connections on its port, nobody
answers them, until `resume_apiserver` (SIGCONT). "down" (`stop_apiserver`: the process
terminated and reaped): connections refused, until `start_apiserver` starts it again on the same
port, certificates and etcd (seconds; `up` would restart the whole control plane).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devenv.cluster import _bootstrap, _components, _pki, _processes, _state
from devenv.cluster._api import Api
from devenv.cluster._components import Layout
from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc
from devenv.cluster._server import locked
from devenv.cluster._state import State

NAME = "kube-apiserver"
DEFAULT_TIMEOUT = 120.0
_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


@contextmanager
def _apiserver(directory: Path) -> Iterator[tuple[Layout, State, Proc]]:
    """The cluster's layout, recorded state and apiserver process, the directory locked."""
    directory = directory.resolve()
    if not (directory / "state.json").is_file():
        raise DevclusterError(f"no dev cluster in {directory} (`devenv cluster up --dir {directory}` starts one)")
    with locked(directory):
        state = _state.load(directory / "state.json")
        procs = [p for p in state.processes if p.name == NAME] if state is not None else []
        if state is None or not state.initialized or not procs:
            raise DevclusterError(f"the dev cluster in {directory} never finished starting; "
                                  f"`devenv cluster up --dir {directory}` starts it")
        yield Layout(directory, state.cache / "bin"), state, procs[0]


def _paused(proc: Proc) -> bool:
    return _processes.running(proc) and _processes.state_letter(proc) == "T"


def _running(proc: Proc, directory: Path) -> None:
    if not _processes.running(proc):
        raise DevclusterError(f"the kube-apiserver of {directory} is not running "
                              f"(`devenv cluster up --dir {directory}` restarts it)")


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DevclusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _admin(layout: Layout, state: State) -> Api:
    pki = _pki.Pki(layout.pki)
    return Api(state.server, pki.ca_cert, pki.cert("admin"), pki.key("admin"), timeout=5.0)


def pause_apiserver(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Freeze the apiserver (SIGSTOP): its port accepts connections, nothing answers them."""
    with _apiserver(directory) as (_layout, _recorded, proc):
        _running(proc, directory)
        os.kill(proc.pid, signal.SIGSTOP)
        _wait("the kube-apiserver to be stopped by SIGSTOP", lambda: _paused(proc), timeout)


def resume_apiserver(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Thaw a paused apiserver (SIGCONT) and return when it answers /readyz again."""
    with _apiserver(directory) as (layout, state, proc):
        _running(proc, directory)
        os.kill(proc.pid, signal.SIGCONT)
        api = _admin(layout, state)
        _wait("the resumed kube-apiserver to be ready", lambda: not _paused(proc) and api.readyz(), timeout)


def stop_apiserver(directory: Path) -> None:
    """Terminate the apiserver (a paused one too) and reap it: connections are refused.

    SIGTERM, then SIGKILL after a short grace: its clients' watches (controllers, scheduler,
    kwok stay up) hold a gracefully stopping apiserver well past the moment it stops listening.
    """
    with _apiserver(directory) as (_layout, _recorded, proc):
        _processes.stop([proc], timeout=_GRACE)


def start_apiserver(directory: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Start a stopped apiserver again, same port, certificates and etcd data, and return when it
    is ready; a running one is only waited for (a paused one resumed)."""
    with _apiserver(directory) as (layout, state, proc):
        api = _admin(layout, state)
        if _processes.running(proc):
            os.kill(proc.pid, signal.SIGCONT)
        else:
            if not _processes.ports_free([state.ports.apiserver]):
                raise DevclusterError(f"port {state.ports.apiserver} of the kube-apiserver of {directory} is taken; "
                                      f"`devenv cluster up --dir {directory}` restarts the cluster on new ports")
            argv = _components.apiserver(layout, state.ports, _pki.Pki(layout.pki))
            new = _processes.spawn(NAME, argv, layout.logs / f"{NAME}.log", cwd=layout.run)
            state.processes[state.processes.index(proc)] = new  # its place decides the stop order
            _state.save(layout.state, state)
        waiter = _bootstrap.Waiter(time.monotonic() + timeout, lambda: state.processes)
        waiter.until("the kube-apiserver /readyz", api.readyz, interval=0.2)
