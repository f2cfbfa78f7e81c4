"""A local Prometheus: the real server (Debian's `prometheus`) scraping test model servers and
evaluating alert rules, so the agent's metrics client and rendered rules meet the real thing.

Like the forge, everything it owns (config, TSDB, log, state file) is under its directory, its
port is picked free, and its one process is started detached and identified by pid and start
time (devenv.cluster._processes), so `prometheus_down` never signals a stranger and leaves
no process behind. Started with --web.enable-lifecycle, so targets and rule files can be
changed at run time (`prometheus_reload`) without a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devenv.cluster import _processes
from devenv.cluster._errors import DevclusterError
from devenv.cluster._processes import Proc
from devenv.cluster._server import load_state, locked, port_taken, proc_of, save_state

__all__ = ["PrometheusInfo", "prometheus_down", "prometheus_reload", "prometheus_up"]

_STATE_VERSION = 1
_JOB = "models"
_HTTP_TIMEOUT = 5.0
_START_ATTEMPTS = 3
# Static targets reach the scrape manager through the discovery manager, which passes
# updates on at most every 5 s: waiting for them takes up to that long.
_TARGETS_TIMEOUT = 30.0


@dataclass(frozen=True)
class PrometheusInfo:
    """How to reach a running Prometheus."""

    url: str  # "http://127.0.0.1:PORT"
    directory: Path
    pid: int
    config_file: Path


@dataclass(frozen=True)
class _Layout:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def state(self) -> Path:
        return self.directory / "prometheus.json"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "log" / "prometheus.log"


def _binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise DevclusterError("prometheus not found on PATH; install Debian's prometheus package (make system)")
    return found


# --- configuration --------------------------------------------------------------------------


def _config(state: dict[str, Any]) -> str:
    """One static job; honor_labels keeps the namespace/model/version/track labels the model
    servers export (Prometheus would otherwise rename clashing ones to exported_*)."""
    job: dict[str, Any] = {"job_name": _JOB, "honor_labels": True, "scrape_interval": state["scrape_interval"]}
    if state["targets"]:
        job["static_configs"] = [{"targets": list(state["targets"])}]
    doc = {
        "global": {"scrape_interval": state["scrape_interval"], "evaluation_interval": state["evaluation_interval"]},
        "rule_files": list(state["rule_files"]),
        "scrape_configs": [job],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _write_config(layout: _Layout, state: dict[str, Any]) -> None:
    tmp = layout.config.with_name(layout.config.name + ".tmp")
    tmp.write_text(_config(state))
    os.replace(tmp, layout.config)


# --- HTTP -----------------------------------------------------------------------------------


def _get(url: str, timeout: float = _HTTP_TIMEOUT) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _ready(url: str) -> bool:
    try:
        return _get(url + "/-/ready", timeout=2.0)[0] == 200
    except OSError:
        return False


def _active_targets(url: str) -> set[str]:
    """host:port of the models job's active targets, as Prometheus has them now."""
    status, body = _get(url + "/api/v1/targets?state=active")
    if status != 200:
        raise DevclusterError(f"GET {url}/api/v1/targets: HTTP {status}: {body[:300]!r}")
    targets = json.loads(body)["data"]["activeTargets"]
    return {t.get("discoveredLabels", {}).get("__address__", "") for t in targets if t.get("scrapePool") == _JOB}


def _wait_for_targets(url: str, targets: Sequence[str], proc: Proc, log: Path) -> None:
    deadline = time.monotonic() + _TARGETS_TIMEOUT
    want = set(targets)
    while (have := _active_targets(url)) != want:
        if not _processes.running(proc):
            raise DevclusterError(f"prometheus exited; the end of {log}:\n{_processes.log_tail(proc)}")
        if time.monotonic() > deadline:
            raise DevclusterError(f"prometheus has targets {sorted(have)}, not {sorted(want)}, "
                                  f"{_TARGETS_TIMEOUT:g}s after its configuration changed")
        time.sleep(0.1)


# --- processes ------------------------------------------------------------------------------


def _start(layout: _Layout, state: dict[str, Any], deadline: float) -> Proc:
    """Start prometheus and wait until /-/ready; on failure stop it."""
    port = state["port"]
    argv = [
        _binary(),
        f"--config.file={layout.config}",
        f"--storage.tsdb.path={layout.data}",
        "--storage.tsdb.retention.time=2h",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=info",
    ]
    proc = _processes.spawn("prometheus", argv, layout.log, cwd=layout.directory)
    state["process"] = proc.to_json()
    save_state(layout.state, _STATE_VERSION, state)
    url = f"http://127.0.0.1:{port}"
    try:
        while not _ready(url):
            if not _processes.running(proc):
                how = _processes.exit_status(proc) or "exited"
                raise DevclusterError(f"prometheus {how} while starting; the end of {layout.log}:\n"
                                      f"{_processes.log_tail(proc)}")
            if time.monotonic() > deadline:
                raise DevclusterError(f"prometheus was not ready at {url}/-/ready in time; the end of "
                                      f"{layout.log}:\n{_processes.log_tail(proc)}")
            time.sleep(0.05)
    except BaseException:
        _processes.stop([proc], timeout=10.0)
        raise
    return proc


def _info(layout: _Layout, state: dict[str, Any], proc: Proc) -> PrometheusInfo:
    return PrometheusInfo(url=f"http://127.0.0.1:{state['port']}", directory=layout.directory, pid=proc.pid,
                          config_file=layout.config)


def _rule_paths(rule_files: Sequence[Path]) -> list[str]:
    paths = []
    for rule_file in rule_files:
        path = Path(rule_file).resolve()
        if not path.is_file():
            raise DevclusterError(f"rule file {path} not found")
        paths.append(str(path))
    return paths


def prometheus_up(directory: Path, scrape_targets: Sequence[str] = (), rule_files: Sequence[Path] = (), *,
                  scrape_interval: str = "1s", evaluation_interval: str = "1s",
                  timeout: float = 60.0) -> PrometheusInfo:
    """Start Prometheus in directory on a free loopback port, scraping scrape_targets
    ("host:port", job `models`) and evaluating rule_files; returns once it is ready and has
    the targets (ready in ~0.1 s; targets take up to 5 s more, Prometheus' discovery
    throttle). A Prometheus already running there is stopped first: the caller's
    configuration is what runs."""
    binary = _binary()
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    layout = _Layout(directory)
    deadline = time.monotonic() + timeout
    with locked(directory):
        old = proc_of(load_state(layout.state, _STATE_VERSION))
        if old is not None:
            _processes.stop([old], timeout=10.0)
        layout.data.mkdir(exist_ok=True)
        layout.log.parent.mkdir(exist_ok=True)
        state: dict[str, Any] = {"binary": binary, "port": 0, "process": None, "ready": False,
                                 "targets": list(scrape_targets), "rule_files": _rule_paths(rule_files),
                                 "scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval}
        _write_config(layout, state)
        for attempt in range(1, _START_ATTEMPTS + 1):
            state["port"] = _processes.free_ports(1)[0]
            log_size = layout.log.stat().st_size if layout.log.exists() else 0
            try:
                proc = _start(layout, state, deadline)
            except DevclusterError:
                if attempt < _START_ATTEMPTS and port_taken(layout.log, log_size):
                    continue
                raise
            break
        else:
            raise AssertionError("unreachable")
        info = _info(layout, state, proc)
        try:
            _wait_for_targets(info.url, scrape_targets, proc, layout.log)
        except BaseException:
            _processes.stop([proc], timeout=10.0)
            raise
        state.update(ready=True, process=proc.to_json())
        save_state(layout.state, _STATE_VERSION, state)
        return info


def prometheus_reload(info: PrometheusInfo, scrape_targets: Sequence[str], rule_files: Sequence[Path] = ()) -> None:
    """Replace the targets and rule files of a running Prometheus: rewrite its config, POST
    /-/reload (which answers once config and rules are applied, or with the error), then wait
    until the new targets are active."""
    layout = _Layout(info.directory)
    with locked(info.directory):
        state = load_state(layout.state, _STATE_VERSION)
        proc = proc_of(state)
        if state is None or proc is None or not _processes.running(proc):
            raise DevclusterError(f"no prometheus running in {info.directory}; prometheus_up first")
        state.update(targets=list(scrape_targets), rule_files=_rule_paths(rule_files))
        _write_config(layout, state)
        save_state(layout.state, _STATE_VERSION, state)
        req = urllib.request.Request(info.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30.0) as resp:
                resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace").strip()[:1000]
            raise DevclusterError(f"prometheus refused the new configuration (HTTP {err.code}): {detail}") from None
        except OSError as err:
            raise DevclusterError(f"POST {info.url}/-/reload failed: {err}") from None
        _wait_for_targets(info.url, scrape_targets, proc, layout.log)


def prometheus_down(directory: Path) -> None:
    """Stop the Prometheus recorded in directory (SIGTERM, then SIGKILL) and reap it; idempotent.
    Its data and log stay for a post-mortem."""
    directory = directory.resolve()
    if not directory.is_dir():
        return
    layout = _Layout(directory)
    with locked(directory):
        state = load_state(layout.state, _STATE_VERSION)
        proc = proc_of(state)
        if state is None or proc is None:
            return
        _processes.stop([proc], timeout=10.0)
        state["ready"] = False
        save_state(layout.state, _STATE_VERSION, state)
