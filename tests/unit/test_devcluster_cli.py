"""`devenv cluster up|down|status` and `devenv demo`: the local environment's own command, with
the options, outputs and exit codes `agent devcluster` and `agent demo` had."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devenv import cli, cluster


def test_cluster_actions_are_subcommands_with_their_own_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["cluster", "up", "--help"])
    assert "--dir DIR" in capsys.readouterr().out
    args = cli.build_parser().parse_args(["cluster", "status", "--dir", "x"])
    assert (args.action, args.dir) == ("status", "x")
    assert cli.build_parser().parse_args(["cluster", "down"]).dir == ".devcluster"


def test_demo_flags() -> None:
    args = cli.build_parser().parse_args(["demo"])
    assert (args.dir, args.keep, args.promotion) == (".devcluster/demo", False, False)
    args = cli.build_parser().parse_args(["demo", "--dir", "d", "--keep", "--promotion"])
    assert (args.dir, args.keep, args.promotion) == ("d", True, True)


def test_status_prints_no_python_reprs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "status", lambda _d: {
        "ready": True, "directory": str(tmp_path), "pids": {"etcd": 10, "kube-apiserver": 11},
        "running": {"etcd": True, "kube-apiserver": False}, "ports": {}})
    assert cli.main(["cluster", "status", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "True" not in out
    assert "pids:      etcd 10, kube-apiserver 11\n" in out and "running:   etcd yes, kube-apiserver no\n" in out
    assert "ready:     yes\n" in out and "ports:     -\n" in out


def test_status_of_no_cluster_in_each_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "status", "--dir", str(tmp_path), "-o", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ready"] is False and doc["directory"] == str(tmp_path)
    assert cli.main(["cluster", "status", "--dir", str(tmp_path), "--output", "yaml"]) == 1
    assert yaml.safe_load(capsys.readouterr().out) == doc
    assert cli.main(["cluster", "status", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("ready:     no\n")


def test_an_error_is_said_on_stderr_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stopped cluster whose data is gone: `up` refuses before it starts anything (no binaries
    needed), and says how to clear it, with the devenv command."""
    dead = {"name": "etcd", "pid": 2**22 + 1, "start_ticks": 1, "exe": "/nonexistent/etcd", "log": "/dev/null"}
    ports = dict(etcd_client=1, etcd_peer=2, apiserver=3, controller_manager=4, scheduler=5)
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 1, "cache": str(tmp_path / "cache"), "ports": ports, "server": "https://127.0.0.1:3",
        "processes": [dead], "ready": True, "initialized": True}))
    try:
        code = cli.main(["cluster", "up", "--dir", str(tmp_path)])
    finally:
        cluster.down(tmp_path)  # had `up` started a cluster after all, stop it
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith(f"error: the cluster in {tmp_path} has stopped and its data is gone"), err
    assert f"`devenv cluster down --dir {tmp_path}` removes what is left" in err


def test_python_m_devenv_is_the_command(tmp_path: Path) -> None:
    """`.venv/bin/devenv` runs `python -m devenv`: the same parser, exit codes and output."""
    done = subprocess.run([sys.executable, "-m", "devenv", "cluster", "status", "--dir", str(tmp_path / "none"),
                           "-o", "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["ready"] is False, done.stderr
