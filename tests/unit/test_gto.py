"""Unit tests of the GTO resolver against real git repos in tmp_path: GTO's tag grammar
(name@vX, name#stage#N, the older name#stage, unassign/deregister/deprecate), the artifact
URI from artifacts.yaml / dvc.yaml, a remote read with ls-remote, and clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.registry import RegistryError
from agent.registry._gto import GtoRegistry

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
       "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/nonexistent"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str = "c") -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def tag(repo: Path, name: str, at: str = "HEAD") -> None:
    git(repo, "tag", "-a", name, "-m", name, at)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "ml"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    return r


def registry(repo: Path) -> GtoRegistry:
    return GtoRegistry(repo, timeout=10, env=ENV)


@pytest.fixture
def history(repo: Path) -> dict[str, str]:
    """v1.0.0 and v1.1.0 registered, prod assigned to v1.0.0 (#3) then v1.1.0 (#4),
    staging to v1.0.0 (#2)."""
    c1 = commit(repo, {"artifacts.yaml": "fraud-scorer: {type: model, path: 's3://models/fraud/1'}\n"})
    tag(repo, "fraud-scorer@v1.0.0#1")
    tag(repo, "fraud-scorer#staging#2")
    tag(repo, "fraud-scorer#prod#3")
    c2 = commit(repo, {"artifacts.yaml": "fraud-scorer: {type: model, path: 's3://models/fraud/2'}\n"})
    tag(repo, "fraud-scorer@v1.1.0#4")
    tag(repo, "fraud-scorer#prod#5")
    tag(repo, "other@v9.0.0#6")
    return {"v1.0.0": c1, "v1.1.0": c2}


def test_version(repo: Path, history: dict[str, str]) -> None:
    got = registry(repo).resolve("fraud-scorer", version="v1.0.0")
    assert (got.registry, got.name, got.version, got.uri) == ("gto", "fraud-scorer", "v1.0.0", "s3://models/fraud/1")
    assert got.digest is None and got.run_id is None and got.metrics == {} and got.alias is None
    assert registry(repo).resolve("fraud-scorer", version="1.1.0").version == "v1.1.0"  # the "v" is optional


def test_latest_stage_assignment_wins(repo: Path, history: dict[str, str]) -> None:
    got = registry(repo).resolve("fraud-scorer", stage="prod")
    assert (got.version, got.uri, got.alias) == ("v1.1.0", "s3://models/fraud/2", "prod")
    assert registry(repo).resolve("fraud-scorer", stage="staging").version == "v1.0.0"


def test_counter_not_tag_order_decides(repo: Path, history: dict[str, str]) -> None:
    tag(repo, "fraud-scorer#prod#7", history["v1.0.0"])  # a rollback of prod, later counter
    assert registry(repo).resolve("fraud-scorer", stage="prod").version == "v1.0.0"


def test_older_counterless_stage_tag(repo: Path) -> None:
    commit(repo, {"artifacts.yaml": "m: {uri: 's3://m/1'}\n"})
    tag(repo, "m@v0.1.0")
    tag(repo, "m#prod")
    assert registry(repo).resolve("m", stage="prod").version == "v0.1.0"
    commit(repo, {"artifacts.yaml": "m: {uri: 's3://m/2'}\n"})
    tag(repo, "m@v0.2.0#3")
    tag(repo, "m#prod#4")  # any counted assignment is later than the counter-less one
    assert registry(repo).resolve("m", stage="prod").version == "v0.2.0"


def test_unassigned_stage(repo: Path, history: dict[str, str]) -> None:
    tag(repo, "fraud-scorer#prod!#8")
    with pytest.raises(RegistryError, match=r"fraud-scorer#prod: stage 'prod' is unassigned \(tag fraud-scorer#prod!#8\)"):
        registry(repo).resolve("fraud-scorer", stage="prod")


def test_unknown_stage_and_version(repo: Path, history: dict[str, str]) -> None:
    with pytest.raises(RegistryError, match=r"no version was ever assigned to stage 'dev' \(stages: prod, staging\)"):
        registry(repo).resolve("fraud-scorer", stage="dev")
    with pytest.raises(RegistryError, match=r"no registered version v2.0.0 \(registered: v1.0.0, v1.1.0\)"):
        registry(repo).resolve("fraud-scorer", version="v2.0.0")
    with pytest.raises(RegistryError, match="registered: none"):
        registry(repo).resolve("nothing", version="v1.0.0")


def test_deregistered_version(repo: Path, history: dict[str, str]) -> None:
    tag(repo, "fraud-scorer@v1.1.0!#9", history["v1.1.0"])
    with pytest.raises(RegistryError, match=r"no registered version v1\.1\.0"):
        registry(repo).resolve("fraud-scorer", version="v1.1.0")
    with pytest.raises(RegistryError, match="where no version is registered"):
        registry(repo).resolve("fraud-scorer", stage="prod")


def test_deprecated_artifact(repo: Path, history: dict[str, str]) -> None:
    tag(repo, "fraud-scorer@deprecated#10")
    with pytest.raises(RegistryError, match=r"deprecated \(tag fraud-scorer@deprecated#10\)"):
        registry(repo).resolve("fraud-scorer", stage="prod")


def test_stage_tag_on_a_commit_without_a_version(repo: Path, history: dict[str, str]) -> None:
    commit(repo, {"README": "z"})
    tag(repo, "fraud-scorer#prod#11")
    with pytest.raises(RegistryError, match="where no version is registered"):
        registry(repo).resolve("fraud-scorer", stage="prod")


def test_uri_fallbacks_that_are_no_artifact_uri_are_refused(repo: Path) -> None:
    """Without a uri (or a path with a scheme) in artifacts.yaml the version is `<repo>@<commit>`
    (`:<path>`): for a local repo that is no URI a serving runtime can pull, so it is an error
    naming the artifact, the registry and the value, like a Git uri that breaks the rule."""
    c = commit(repo, {"README": "no annotations"})
    tag(repo, "plain@v1.0.0")
    with pytest.raises(RegistryError) as err:
        registry(repo).resolve("plain", version="v1.0.0")
    assert f"GTO {repo}: plain@v1.0.0: the registry answered the artifact URI \"{repo}@{c[:8]}" in str(err.value)
    assert "name the artifact's uri in artifacts.yaml" in str(err.value)
    commit(repo, {"artifacts.yaml": "local: {path: models/local.pkl}\nwithuri: {uri: 'gs://b/m', path: x}\n"})
    tag(repo, "local@v1.0.0")
    tag(repo, "withuri@v1.0.0")
    with pytest.raises(RegistryError, match="is not an artifact URI"):
        registry(repo).resolve("local", version="v1.0.0")
    assert registry(repo).resolve("withuri", version="v1.0.0").uri == "gs://b/m"


def test_dvc_yaml_and_artifact_in_a_subdirectory(repo: Path) -> None:
    commit(repo, {"cv/dvc.yaml": "artifacts:\n  seg: {type: model, path: 's3://cv/seg/3'}\n"})
    tag(repo, "cv=seg@v3.0.0#1")
    tag(repo, "cv=seg#prod#2")
    got = registry(repo).resolve("cv:seg", stage="prod")
    assert (got.name, got.version, got.uri) == ("cv:seg", "v3.0.0", "s3://cv/seg/3")


def test_lightweight_tags_and_prerelease_order(repo: Path) -> None:
    commit(repo, {"artifacts.yaml": "m: {uri: 's3://m/1'}\n"})
    git(repo, "tag", "m@v1.0.0-rc.1")
    git(repo, "tag", "m@v1.0.0")
    git(repo, "tag", "m#prod#5")
    assert registry(repo).resolve("m", stage="prod").version == "v1.0.0"  # the release, not the rc


def test_reference_repo_relative_and_remote(repo: Path, history: dict[str, str], tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    git(models, "init", "-q")
    # a relative repo: from the default repo's directory
    assert GtoRegistry(models, env=ENV).resolve("fraud-scorer", stage="prod", repo="../ml").version == "v1.1.0"
    # a URL: ls-remote, and the uri names the commit (no checkout to read artifacts.yaml), which
    # for a file:// URL is no artifact URI
    url = f"file://{repo}"
    with pytest.raises(RegistryError, match=r'the registry answered the artifact URI "file://.*"… .* characters.*v1\.1\.0'):
        GtoRegistry(models, env=ENV).resolve("fraud-scorer", stage="prod", repo=url)


def test_bare_repository(repo: Path, history: dict[str, str], tmp_path: Path) -> None:
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo), str(bare)], env=ENV, check=True)
    got = GtoRegistry(bare, env=ENV).resolve("fraud-scorer", stage="prod")
    assert (got.version, got.uri) == ("v1.1.0", "s3://models/fraud/2")


def test_git_failures_are_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no such repository"):
        GtoRegistry(tmp_path / "absent", env=ENV).resolve("m", stage="prod")
    with pytest.raises(RegistryError, match=r"GTO file://.*/absent.git: listing tags: "):
        GtoRegistry(tmp_path, env=ENV).resolve("m", stage="prod", repo=f"file://{tmp_path}/absent.git")
    with pytest.raises(RegistryError, match="exactly one of version or stage"):
        GtoRegistry(tmp_path, env=ENV).resolve("m")


def test_bad_annotation_yaml(repo: Path) -> None:
    commit(repo, {"artifacts.yaml": "m: [unclosed\n"})
    tag(repo, "m@v1.0.0")
    with pytest.raises(RegistryError, match=r"artifacts\.yaml at .* is not valid YAML"):
        registry(repo).resolve("m", version="v1.0.0")
