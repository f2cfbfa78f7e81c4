"""A hostile (or broken) model registry: what MLflow or a GTO repo answers is held to the rules a
Git repo is held to, through the real pipeline (`agent render`, `agent diff --base`).

A fake MLflow (a small http.server) answers each hostile artifact URI and version; a GTO repo
holds them in its tags and artifacts.yaml. None of them reaches a rendered object: the command
exits 2 with nothing on stdout, and the error names the registry, the model, the reference and
the offending value escaped as a JSON string (cut at 80 characters).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests._hostile import HOSTILE_URIS, HOSTILE_VERSIONS, RUN, FakeMlflow, serve_mlflow, shown
from tests.unit.conftest import disk_repo, mlflow_repo, registry_model


@pytest.fixture
def mlflow() -> Iterator[tuple[str, FakeMlflow]]:
    fake = FakeMlflow()
    with serve_mlflow(fake) as url:
        yield url, fake


def render(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["render", str(repo), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, registry: str, reference: str, value: str) -> None:
    """Exit 2, nothing rendered, and an error naming registry, model, reference and the value."""
    assert (code, out) == (2, ""), err
    assert err.startswith("error: models/scorer.yaml:"), err
    assert "model fraud/scorer version 'served'" in err and f"({reference})" in err, err
    assert registry in err, err
    assert shown(value) in err, err
    assert err.count("\n") == 1, err  # one line: no value broke it
    assert len(err) < 1200, err  # the value is cut, not printed whole


def test_a_well_behaved_registry_renders(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline the refusals below differ from by one answer."""
    url, _ = mlflow
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert code == 0, err
    assert "storageUri: s3://models/fraud-scorer/7" in out
    assert "modelops.dev/stable-registry: mlflow fraud-scorer@champion=7" in out


@pytest.mark.parametrize("uri", HOSTILE_URIS, ids=range(len(HOSTILE_URIS)))
def test_mlflow_hostile_artifact_uri_reaches_nothing(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], uri: str) -> None:
    url, fake = mlflow
    fake.download_uri = fake.source = uri
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert_refused(code, out, err, f"MLflow {url}: model 'fraud-scorer' alias 'champion'",
                   "mlflow fraud-scorer@champion", uri)
    assert "is not an artifact URI" in err


@pytest.mark.parametrize("location", ["file:///etc", "mlflow-artifacts:/1/abc/artifacts", "s3://b/$(id)"])
def test_mlflow_runs_uri_is_checked_where_it_is_stored(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], location: str) -> None:
    """`runs:/<run>/model` is served from the run's artifact location: that is what is checked."""
    url, fake = mlflow
    fake.run_id, fake.run_artifact_uri = RUN, location
    fake.download_uri = fake.source = f"runs:/{RUN}/model"
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert_refused(code, out, err, f"MLflow {url}", "mlflow fraud-scorer@champion", f"{location}/model")
    fake.run_artifact_uri = "s3://mlflow/1/abc/artifacts"
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert code == 0 and "storageUri: s3://mlflow/1/abc/artifacts/model" in out, err


def test_mlflow_pinned_version_answered_as_another_is_refused(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    url, fake = mlflow
    fake.version = 7
    repo = mlflow_repo(tmp_path / "repo", url, 'mlflow: {name: fraud-scorer, version: "3"}')
    code, out, err = render(repo, capsys)
    assert_refused(code, out, err, f"MLflow {url}: model 'fraud-scorer' version 3", "mlflow fraud-scorer/3", "7")
    assert 'the registry answered version "7" for the pinned version "3"' in err
    assert fake.requests == ["/api/2.0/mlflow/model-versions/get"]  # nothing more was asked on its word


@pytest.mark.parametrize("version", HOSTILE_VERSIONS, ids=range(len(HOSTILE_VERSIONS)))
def test_mlflow_hostile_version_reaches_no_annotation(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], version: str) -> None:
    url, fake = mlflow
    fake.version = version
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert_refused(code, out, err, f"MLflow {url}", "mlflow fraud-scorer@champion", version)
    assert "it is not a version (a positive integer, as MLflow numbers versions)" in err


@pytest.mark.parametrize("run_id", ["../../x", "a b", "r" * 65, "x\ny"])
def test_mlflow_hostile_run_id_is_refused(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], run_id: str) -> None:
    url, fake = mlflow
    fake.run_id = run_id
    code, out, err = render(mlflow_repo(tmp_path / "repo", url), capsys)
    assert_refused(code, out, err, f"MLflow {url}", "mlflow fraud-scorer@champion", run_id)
    assert "/api/2.0/mlflow/runs/get" not in fake.requests


# --- GTO: the tags and artifacts.yaml of a hostile repo -----------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/nonexistent"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def gto_repo(root: Path, artifacts: dict[str, Any], tags: list[str]) -> Path:
    """A model repo that is its own GTO registry: artifacts.yaml (excluded from the manifests)
    and the tags given, on one commit."""
    disk_repo(root, registry_model("gto: {name: scorer-art, stage: prod}"), "  exclude: [artifacts.yaml]\n")
    (root / "artifacts.yaml").write_text(json.dumps(artifacts))  # JSON is YAML: any string survives
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "c")
    for name in tags:
        git(root, "tag", "-a", name, "-m", name)
    return root


@pytest.mark.parametrize("uri", HOSTILE_URIS, ids=range(len(HOSTILE_URIS)))
def test_gto_hostile_uri_in_artifacts_yaml_reaches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           uri: str) -> None:
    repo = gto_repo(tmp_path / "repo", {"scorer-art": {"type": "model", "uri": uri}},
                    ["scorer-art@v1.0.0#1", "scorer-art#prod#2"])
    code, out, err = render(repo, capsys)
    assert_refused(code, out, err, f"GTO {repo}: scorer-art#prod", "gto scorer-art#prod", uri)
    code, out, err = render(repo, capsys, "--revision", "HEAD")  # the commit, as the controller reads it
    assert_refused(code, out, err, f"GTO {repo}", "gto scorer-art#prod", uri)


def test_gto_overlong_version_tag_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = "v1.0.0-" + "a" * 100  # a valid semver pre-release, too long for an annotation
    repo = gto_repo(tmp_path / "repo", {"scorer-art": {"uri": "s3://models/scorer/1"}},
                    [f"scorer-art@{version}#1", "scorer-art#prod#2"])
    code, out, err = render(repo, capsys)
    assert_refused(code, out, err, f"GTO {repo}", "gto scorer-art#prod", version)


def test_gto_well_behaved_repo_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = gto_repo(tmp_path / "repo", {"scorer-art": {"uri": "s3://models/scorer/1"}},
                    ["scorer-art@v1.0.0#1", "scorer-art#prod#2"])
    code, out, err = render(repo, capsys)
    assert code == 0, err
    assert "storageUri: s3://models/scorer/1" in out and "gto scorer-art#prod=v1.0.0" in out


def test_offline_diff_refuses_a_hostile_answer_too(mlflow: tuple[str, FakeMlflow], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`agent diff --base` resolves both sides: a hostile answer is an error, not a diff."""
    url, fake = mlflow
    repo = mlflow_repo(tmp_path / "repo", url)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "models" / "scorer.yaml").write_text(registry_model("mlflow: {name: fraud-scorer, alias: challenger}"))
    git(repo, "commit", "-q", "-am", "head")
    fake.download_uri = fake.source = "s3://b/x\nkind: Secret"
    code = main(["diff", str(repo), "--base", "HEAD~1", "--revision", "HEAD"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert shown("s3://b/x\nkind: Secret") in err and f"MLflow {url}" in err
