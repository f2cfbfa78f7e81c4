"""The demos end with what to do next, and what they print works: `devenv demo --keep` and
`devenv demo --promotion --keep` are run as a user would, then each command of their "What
next" is run as printed (cwd and KUBECONFIG as they say), the stop commands last; nothing of
the demo is left running."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests._commands import agent_commands

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")
DEVENV = str(Path(sys.executable).parent / "devenv")  # `make venv` installs it beside the agent


def what_next(out: str) -> str:
    assert "\n== What next\n" in out, out[-2000:]
    return out.split("\n== What next\n", 1)[1]


def left_running(tmp_path: Path) -> list[str]:
    """Processes whose command line names tmp_path (etcd, apiserver, kwok, gitea of the demo)."""
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(tmp_path) in cmdline:
                left.append(cmdline.replace("\0", " ")[:200])
    return left


def exported(text: str) -> dict[str, str]:
    """The environment the text says to export (`  export NAME=VALUE`), over this one."""
    env = dict(os.environ)
    env.pop("SOPS_AGE_KEY_FILE", None)  # only what the demo tells the user
    for line in text.splitlines():
        if line.startswith("  export "):
            name, _, value = line.removeprefix("  export ").partition("=")
            env[name] = shlex.split(value)[0]
    return env


def run_printed(argv: list[str], cwd: Path, env: dict[str, str],
                program: str = AGENT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def stop_all(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> None:
    for argv in commands:
        if argv[:2] == ["cluster", "down"]:
            run_printed(argv, cwd, env, DEVENV)


def test_demo_keep_prints_commands_that_work_and_how_to_stop(tmp_path: Path) -> None:
    demo = subprocess.run([DEVENV, "demo", "--keep", "--dir", ".devcluster/demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    text = what_next(demo.stdout)
    commands = agent_commands(text)
    stops = agent_commands(text, "devenv")
    env = exported(text)
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
        # the demo's apply stages the new fraud-scorer's canary as `agent apply` does: held back
        # until the stable revision is Ready, then applied in a second pass (noted in the plan)
        applied = demo.stdout.split("\n== 2. agent apply", 1)[1].split("\n== 3. ", 1)[0]
        assert "  fraud/fraud-scorer: canary 13 applied once the stable revision was Ready\n" in applied, applied
        assert env["KUBECONFIG"] == ".devcluster/demo/cluster/kubeconfig" and "SOPS_AGE_KEY_FILE" in env
        assert (tmp_path / ".devcluster/demo/cluster/kubeconfig").is_file()
        # (exit codes: status 1, the ranker's HPA has no metrics server here; diff 1, the canary change)
        expected = {"status": {0, 1}, "diff": {1}, "apply": {0}, "rollout": {0}, "audit": {0}}
        ran = []
        for argv in commands:
            if argv[0] in expected:
                done = run_printed(argv, tmp_path, env)
                assert done.returncode in expected[argv[0]], (argv, done.stdout[-2000:], done.stderr)
                assert "error:" not in done.stderr, (argv, done.stderr)
                ran.append(argv[0])
        assert ran == ["status", "diff", "apply", "rollout", "audit"]
        after = run_printed(["diff", ".devcluster/demo/model-repo"], tmp_path, env)
        assert after.returncode == 0, after.stdout  # the printed apply applied the canary change
        assert stops == [["cluster", "down", "--dir", ".devcluster/demo/cluster"]]
        assert run_printed(stops[0], tmp_path, env, DEVENV).returncode == 0
        assert left_running(tmp_path) == []
    finally:
        stop_all(stops, tmp_path, env)


def test_demo_promotion_keep_prints_commands_that_work_and_how_to_stop_both(tmp_path: Path) -> None:
    demo = subprocess.run([DEVENV, "demo", "--promotion", "--keep", "--dir", ".devcluster/demo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    text = what_next(demo.stdout)
    commands = agent_commands(text)
    stops = agent_commands(text, "devenv")
    env = exported(text)
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
        assert env["KUBECONFIG"] == ".devcluster/demo/cluster/kubeconfig" and "SOPS_AGE_KEY_FILE" in env
        expected = {"status": {0, 1}, "diff": {0}, "promote": {0}, "audit": {0}}
        for argv in commands:
            if argv[0] in expected:
                done = run_printed(argv, tmp_path, env)
                assert done.returncode in expected[argv[0]], (argv, done.stdout[-2000:], done.stderr)
        run = next(argv for argv in commands if argv[0] == "run")
        token, ca = run[run.index("--git-token-file") + 1], run[run.index("--git-ca-file") + 1]
        assert (tmp_path / token).is_file() and (tmp_path / ca).is_file()
        assert [argv[:2] for argv in stops] == [["cluster", "down"]] * 2
        assert [argv[3] for argv in stops] == [".devcluster/demo/cluster", ".devcluster/demo/forge"]
        for argv in stops:
            done = run_printed(argv, tmp_path, env, DEVENV)
            assert done.returncode == 0, done.stderr
        assert left_running(tmp_path) == []
        assert (tmp_path / ".devcluster/demo/forge/pki").is_dir()  # the forge is stopped, its data kept
    finally:
        stop_all(stops, tmp_path, env)
