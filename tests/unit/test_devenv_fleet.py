"""Several local clusters: one kubeconfig with a context per cluster, the apiserver's faults'
process handling, and `devenv fleet up|down|status` without starting a cluster."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from devenv import cli, cluster, fleet
from devenv.cluster import DevclusterError, _processes
from devenv.cluster._kubeconfig import Credentials, write, write_contexts


class _Member:
    """What write_kubeconfig reads of a ClusterInfo."""

    def __init__(self, tmp_path: Path, name: str, port: int) -> None:
        self.server = f"https://127.0.0.1:{port}"
        self.ca_file, self.client_cert, self.client_key = (tmp_path / f"{name}-{k}.pem" for k in ("ca", "crt", "key"))
        for path in (self.ca_file, self.client_cert, self.client_key):
            path.write_text(f"{path.name}\n")


def test_one_kubeconfig_with_a_context_per_cluster_as_kubectl_keeps_them(tmp_path: Path) -> None:
    members = {name: _Member(tmp_path, name, port) for name, port in (("staging", 1), ("prod-1", 2), ("prod-2", 3))}
    path = cluster.write_kubeconfig(tmp_path / "fleet" / "kubeconfig", members)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name("kubeconfig.tmp").exists()
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "staging"
    assert doc["contexts"] == [{"name": n, "context": {"cluster": n, "user": f"{n}-admin"}} for n in members]
    assert [c["cluster"]["server"] for c in doc["clusters"]] == [m.server for m in members.values()]
    users = {u["name"]: u["user"] for u in doc["users"]}
    assert len(users) == 3  # one user per cluster: each has its own CA and admin certificate
    assert base64.b64decode(users["prod-2-admin"]["client-key-data"]) == b"prod-2-key.pem\n"
    assert yaml.safe_load(cluster.write_kubeconfig(path, members, current="prod-1").read_text())[
        "current-context"] == "prod-1"


def test_a_cluster_s_own_kubeconfig_keeps_its_shape(tmp_path: Path) -> None:
    m = _Member(tmp_path, "c", 1)
    doc = yaml.safe_load(write(tmp_path / "k", m.server, m.ca_file, m.client_cert, m.client_key,
                               "system:kube-scheduler").read_text())
    assert doc["contexts"] == [{"name": "devcluster", "context": {"cluster": "devcluster",
                                                                  "user": "system:kube-scheduler"}}]
    assert [u["name"] for u in doc["users"]] == ["system:kube-scheduler"]


@pytest.mark.parametrize(("names", "current", "message"), [
    ((), None, "a kubeconfig needs at least one context"),
    (("prod 1",), None, 'context name "prod 1" is not 1-63 letters'),
    (("-x",), None, 'context name "-x" is not'),
    (("a/b",), None, 'context name "a/b" is not'),
    (("staging",), "prod", "the current context prod is not one of staging"),
])
def test_bad_context_names_are_refused(tmp_path: Path, names: tuple[str, ...], current: str | None,
                                       message: str) -> None:
    creds = Credentials("https://127.0.0.1:1", tmp_path, tmp_path, tmp_path, "admin")
    with pytest.raises(DevclusterError) as refused:
        write_contexts(tmp_path / "k", dict.fromkeys(names, creds), current)
    assert message in str(refused.value)
    assert not (tmp_path / "k").exists()


def test_a_paused_process_is_stopped_by_its_sigterm_not_a_sigkill(tmp_path: Path) -> None:
    proc = _processes.spawn("sleeper", ["/bin/sleep", "60"], tmp_path / "sleeper.log", cwd=tmp_path)
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while _processes.state_letter(proc) != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    began = time.monotonic()
    assert _processes.stop([proc], timeout=15.0) == []  # none needed SIGKILL
    assert time.monotonic() - began < 10
    assert not _processes.running(proc) and _processes.state_letter(proc) == ""
    assert _processes.exit_status(proc) == "killed by SIGTERM"


@pytest.mark.parametrize("fault", [cluster.pause_apiserver, cluster.resume_apiserver, cluster.stop_apiserver,
                                   cluster.start_apiserver])
def test_a_fault_on_no_cluster_says_how_to_start_one(tmp_path: Path, fault: Callable[[Path], None]) -> None:
    with pytest.raises(DevclusterError) as refused:
        fault(tmp_path)
    assert str(refused.value) == f"no dev cluster in {tmp_path} (`devenv cluster up --dir {tmp_path}` starts one)"


def test_fleet_commands_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["fleet", "status", "--dir", "d", "-o", "json"])
    assert (args.action, args.dir, args.output) == ("status", "d", "json")
    assert cli.build_parser().parse_args(["fleet", "up"]).dir == ".devcluster/fleet"
    with pytest.raises(SystemExit):
        cli.main(["fleet", "--help"])
    assert "{up,down,status}" in capsys.readouterr().out


def test_fleet_status_of_no_fleet_in_each_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fleet", "status", "--dir", str(tmp_path), "-o", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"ready": False, "directory": str(tmp_path), "kubeconfig": "", "clusters": [
        {"name": n, "ready": False, "server": "", "paused": [], "directory": str(tmp_path / n)} for n in fleet.NAMES]}
    assert cli.main(["fleet", "status", "--dir", str(tmp_path), "-o", "yaml"]) == 1
    assert yaml.safe_load(capsys.readouterr().out) == doc
    assert cli.main(["fleet", "status", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[:4] == ["ready:      no", "kubeconfig: -", "CONTEXT  READY  SERVER  DIRECTORY",
                                    f"staging  no     -       {tmp_path / 'staging'}"]
    assert "None" not in out and "[" not in out


def test_fleet_down_of_no_fleet_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kubeconfig").write_text("")
    assert cli.main(["fleet", "down", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"fleet in {tmp_path} stopped\n"
    assert not (tmp_path / "kubeconfig").exists()


def test_fleet_member_names_are_distinct(tmp_path: Path) -> None:
    with pytest.raises(DevclusterError, match="distinct member names, not a, a"):
        fleet.up(tmp_path, ("a", "a"))
