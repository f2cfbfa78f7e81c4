"""How the demos end: the commands to try next, each one a command line the CLI takes; with
--keep where the kubeconfig is and how to stop what runs; without it, that --keep keeps it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent import cli
from devenv import cli as devenv_cli
from devenv.demo import next_steps, promotion_next_steps
from tests._commands import agent_commands
from tests._python_text import python_in

KEY = Path(__file__).resolve().parents[2] / "examples" / "keys" / "demo.agekey"  # outside the tests' cwd: absolute


class Forge:
    """What promotion_next_steps reads of a devcluster.ForgeInfo."""

    def __init__(self, directory: Path) -> None:
        self.url = "https://127.0.0.1:3443/"
        self.admin_user = "modelops"
        self.token_file = directory / "forge" / "admin.token"
        self.ca_file = directory / "forge" / "pki" / "ca.pem"


def parses(argv: list[str]) -> None:
    """The CLI's parser takes it: every flag and value exists (a typo would exit 2)."""
    cli.build_parser().parse_args(argv)


def devenv_parses(argv: list[str]) -> None:
    """devenv's parser takes it (`devenv cluster down --dir DIR`, `devenv demo --keep ...`)."""
    devenv_cli.build_parser().parse_args(argv)


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".devcluster" / "demo"


def test_kept_cluster_kubeconfig_commands_and_how_to_stop(demo_dir: Path) -> None:
    text = next_steps(demo_dir, kept=True)
    assert "still running" in text
    assert "Its kubeconfig: .devcluster/demo/cluster/kubeconfig" in text
    assert "export KUBECONFIG=.devcluster/demo/cluster/kubeconfig" in text
    assert f"export SOPS_AGE_KEY_FILE={KEY}" in text  # the example's Secret opens with the demo key
    commands = agent_commands(text)
    assert [c[:2] for c in commands] == [["status", ".devcluster/demo/model-repo"],
                                         ["diff", ".devcluster/demo/model-repo"],
                                         ["apply", ".devcluster/demo/model-repo"],
                                         ["rollout", "status"],
                                         ["audit", "verify"]]
    assert agent_commands(text, "devenv") == [["cluster", "down", "--dir", ".devcluster/demo/cluster"]]
    for argv in commands:
        parses(argv)
    for argv in agent_commands(text, "devenv"):
        devenv_parses(argv)
    assert not python_in(text)


def test_without_keep_it_says_keep_and_offline_commands(demo_dir: Path) -> None:
    text = next_steps(demo_dir, kept=False)
    assert "stopped" in text and "devenv demo --keep --dir .devcluster/demo" in text
    commands = agent_commands(text)
    assert agent_commands(text, "devenv") == [["demo", "--keep", "--dir", ".devcluster/demo"]]
    devenv_parses(agent_commands(text, "devenv")[0])
    assert ["diff", ".devcluster/demo/model-repo", "--base", "HEAD~1"] in commands
    assert f"export SOPS_AGE_KEY_FILE={KEY}" in text
    assert not any(c[0] in ("status", "apply", "rollout") for c in commands)  # nothing needs the stopped cluster
    for argv in commands:
        parses(argv)


def test_promotion_kept_says_kubeconfig_forge_and_how_to_stop_both(demo_dir: Path) -> None:
    clone = demo_dir / "model-repo-1"
    url = "https://127.0.0.1:3443/modelops/model-repo-1.git"
    text = promotion_next_steps(demo_dir, clone, url, kept=True, forge=Forge(demo_dir))
    assert "export KUBECONFIG=.devcluster/demo/cluster/kubeconfig" in text
    assert f"export SOPS_AGE_KEY_FILE={KEY}" in text
    assert "https://127.0.0.1:3443/ (user modelops, API token in .devcluster/demo/forge/admin.token" in text
    commands = agent_commands(text)
    assert agent_commands(text, "devenv") == [["cluster", "down", "--dir", ".devcluster/demo/cluster"],
                                     ["cluster", "down", "--dir", ".devcluster/demo/forge"]]
    for argv in agent_commands(text, "devenv"):
        devenv_parses(argv)
    run = next(c for c in commands if c[0] == "run")
    assert run[run.index("--repo") + 1] == url and "--git-token-file" in run and "--git-ca-file" in run
    for argv in commands:
        parses(argv)
    assert not python_in(text)


def test_promotion_without_keep(demo_dir: Path) -> None:
    text = promotion_next_steps(demo_dir, demo_dir / "model-repo-1", "https://h/r.git", kept=False,
                                forge=Forge(demo_dir))
    commands = agent_commands(text)
    assert agent_commands(text, "devenv") == [["demo", "--promotion", "--keep", "--dir", ".devcluster/demo"]]
    devenv_parses(agent_commands(text, "devenv")[0])
    for argv in commands:
        parses(argv)


def test_paths_outside_the_working_directory_are_absolute_and_quoted(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "a dir"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    text = next_steps(elsewhere, kept=True)
    assert f"devenv cluster down --dir '{elsewhere}/cluster'" in text
    assert agent_commands(text, "devenv") == [["cluster", "down", "--dir", f"{elsewhere}/cluster"]]
    for argv in agent_commands(text):
        parses(argv)


def test_an_agent_not_on_the_path_is_named(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` runs .venv/bin/agent: the commands say `agent`, and how to get that one."""
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    text = next_steps(demo_dir, kept=True)
    assert f"(`agent` is {venv_bin / 'agent'}: `source {venv_bin / 'activate'}` puts it on your PATH)" in text
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert "puts it on your PATH" not in next_steps(demo_dir, kept=True)
