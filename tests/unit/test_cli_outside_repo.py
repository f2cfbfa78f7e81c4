"""The CLI outside a model repo (`cd /tmp; agent rollout status`): one line saying there is no
model repo there and how to name one, instead of the problems of every YAML file below (a
virtualenv, test folders). A directory that may be a model repo (a git top level, a directory
of our documents without a RepositoryConfig, or with one in a subdirectory) is still read as
one; a long error list is cut in text output."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
MODEL_DOC = """\
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata: {name: m%d}
spec: {format: sklearn, versions: [{version: "1", uri: "s3://b/1/"}], stable: 1, replicas: 1}
"""


@pytest.fixture
def junk(tmp_path: Path) -> Path:
    """A directory like /tmp: folders of YAML files that are no model repo, none of ours."""
    for i in range(60):
        folder = tmp_path / "venv" / "lib" / f"pkg{i}"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("key: [unclosed\n")
    (tmp_path / "pytest-of-me" / "kubeconfig.yaml").parent.mkdir()
    (tmp_path / "pytest-of-me" / "kubeconfig.yaml").write_text("apiVersion: v1\nkind: Config\n")
    (tmp_path / "notes.yaml").write_text("todo: [a, b]\n")
    return tmp_path


@pytest.mark.parametrize(("argv", "usage"), [
    (["rollout", "status"], "agent rollout status [MODEL] PATH"),
    (["validate"], "agent validate PATH"),
    (["validate", "-o", "json"], "agent validate PATH"),
    (["render"], "agent render PATH"),
    (["diff", "--base", "HEAD"], "agent diff PATH"),
    (["promote", "scorer", ".", "--stable"], "agent promote MODEL PATH"),
    (["rollout", "abort", "scorer"], "agent rollout abort MODEL PATH"),
    (["registry", "sync", "--alias", "champion"], "agent registry sync PATH"),
])
def test_outside_a_model_repo_is_one_line(junk: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], argv: list[str], usage: str) -> None:
    monkeypatch.chdir(junk)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: no model repo at {junk} (no RepositoryConfig found in it or above it); "
                            f"pass the repo's path: {usage}\n")
    assert captured.out == ""


def test_a_path_below_junk_names_that_path(junk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(junk / "venv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: no model repo at {junk / 'venv'} (no RepositoryConfig")


def test_model_repos_below_are_named(junk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/tmp holding copies of model repos (test folders): the one below is named; PATH is not
    read as a repo holding it."""
    shutil.copytree(EXAMPLE, junk / "pytest-of-me" / "t1" / "model-repo")
    assert cli.main(["validate", str(junk)]) == 2
    assert capsys.readouterr().err == (
        f"error: no model repo at {junk} (no RepositoryConfig found in it or above it); pass the repo's path: "
        f"agent validate PATH (below it: {junk / 'pytest-of-me' / 't1' / 'model-repo'})\n")
    shutil.copytree(EXAMPLE, junk / "pytest-of-me" / "t2" / "model-repo")
    assert cli.main(["validate", str(junk)]) == 2
    assert capsys.readouterr().err.endswith(f"(below it: {junk / 'pytest-of-me' / 't1' / 'model-repo'}, "
                                            f"{junk / 'pytest-of-me' / 't2' / 'model-repo'}, ...)\n")


def test_a_repository_config_in_a_subdirectory_is_still_a_repo(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    (tmp_path / "repo" / "config").mkdir()
    (tmp_path / "repo" / "repo.yaml").rename(tmp_path / "repo" / "config" / "repo.yaml")
    assert cli.main(["validate", str(tmp_path / "repo")]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {tmp_path / 'repo'} @ working-tree: 5 models")


def test_a_missing_path_keeps_its_own_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(tmp_path / "nope")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_a_git_top_level_without_repository_config_is_read(junk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A git repo may keep its RepositoryConfig anywhere, or have none: it is read (and here
    its problems listed)."""
    subprocess.run(["git", "init", "-q", str(junk)], check=True, timeout=60)
    assert cli.main(["validate", str(junk)]) == 2
    assert "error: 62 problem(s) in the model repo:" in capsys.readouterr().err


def test_a_bare_directory_of_our_documents_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.yaml").write_text((MODEL_DOC % 1).replace("stable: 1", 'stable: "1"'))
    assert cli.main(["validate", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {tmp_path} @ working-tree: 1 models")


def test_a_subdirectory_of_a_model_repo_still_finds_its_root(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    assert cli.main(["validate", str(tmp_path / "repo" / "teams" / "fraud" / "infra")]) == 0
    assert "note: using the model repo at" in capsys.readouterr().err


def test_a_long_error_list_is_cut_in_text_and_whole_in_json(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    models = tmp_path / "repo" / "bad"
    models.mkdir()
    for i in range(57):
        (models / f"m{i:02}.yaml").write_text(MODEL_DOC % i)  # stable: 1, a number: one error each
    assert cli.main(["validate", str(tmp_path / "repo")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: 57 problem(s) in the model repo:"
    assert len(lines) == 1 + 50 + 1
    assert lines[1].startswith("bad/m00.yaml:4: spec.stable:") and lines[50].startswith("bad/m49.yaml:4:")
    assert lines[-1] == "... and 7 more; agent validate PATH -o json lists them all"
    for fmt in ("json", "yaml"):
        assert cli.main(["validate", str(tmp_path / "repo"), "-o", fmt]) == 2
        out = capsys.readouterr().out
        if fmt == "json":
            assert len(json.loads(out)["errors"]) == 57
        else:
            assert out.count("  file: bad/m") == 57


def test_fifty_errors_are_not_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    for i in range(50):
        (tmp_path / "repo" / f"m{i:02}.yaml").write_text(MODEL_DOC % i)
    assert cli.main(["validate", str(tmp_path / "repo")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 51 and "more" not in lines[-1]


def test_a_fifo_named_yaml_does_not_block_the_look(junk: Path) -> None:
    import os
    import sys

    os.mkfifo(junk / "pipe.yaml")
    done = subprocess.run([sys.executable, "-m", "agent", "validate", str(junk)], capture_output=True, text=True,
                          timeout=60, cwd=junk)
    assert done.returncode == 2 and done.stderr.startswith(f"error: no model repo at {junk} "), done.stderr
