"""What of a repo makes the controller write to Git (the least access each mode needs), the
check of the credentials once per process, and the write-back's ssh settings. The refusal of a
read-only token on a real forge: tests/integration/test_git_write_access.py."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from agent.controller._write_access import WriteAccess, WriteAccessDenied, write_needs
from agent.source import GitAuth, Mirror, git_auth
from agent.spec import Spec
from agent.spec._types import Rollout
from tests.unit.conftest import loads, repo


def spec_with(**rollout: object) -> Spec:
    spec = loads(repo())
    model = spec.models[0]
    return dataclasses.replace(spec, models=(dataclasses.replace(model, rollout=Rollout("canary", **rollout)),))  # type: ignore[arg-type]


@pytest.mark.parametrize(("rollout", "expected"), [
    ({}, ["onSuccess: commit pushes to the followed branch"]),
    ({"on_success": "pullRequest"}, ["onSuccess: pullRequest pushes a branch and opens a pull request"]),
    ({"on_success": "none"}, []),
    ({"on_success": "none", "revert_pull_request": True}, ["revertPullRequest pushes a branch and opens a pull request"]),
])
def test_what_writes_to_git(rollout: dict[str, object], expected: list[str]) -> None:
    assert [n.what for n in write_needs(spec_with(**rollout))] == expected
    assert all(n.who == "fraud/scorer" for n in write_needs(spec_with(**rollout)))


def test_a_repo_without_rollouts_writes_nothing_and_the_registry_sync_does() -> None:
    spec = loads(repo())
    assert write_needs(spec) == []
    assert [n.who for n in write_needs(spec, registry_sync=True)] == ["the registry sync"]


def _remote(tmp_path: Path) -> Path:
    work, bare = tmp_path / "work", tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "a").write_text("a\n")
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"],
                 ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *args], cwd=work, check=True)
    return bare


def test_the_credentials_are_tried_once_with_a_push_that_sends_nothing(tmp_path: Path) -> None:
    bare = _remote(tmp_path)
    refs = ["git", "--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)"]
    before = subprocess.run(refs, capture_output=True, text=True, check=True).stdout
    mirror = Mirror(bare.as_uri(), "main", tmp_path / "cache")
    mirror.sync()
    check = WriteAccess(mirror, has_token=False, registry_sync=False)
    assert [n.who for n in check.check(spec_with())] == ["fraud/scorer"]
    assert check.verified
    assert subprocess.run(refs, capture_output=True, text=True, check=True).stdout == before  # nothing was pushed
    subprocess.run(["rm", "-rf", str(bare)], check=True)  # a second try would fail: it is not made
    assert [n.who for n in check.check(spec_with())] == ["fraud/scorer"]


def test_nothing_is_tried_when_nothing_writes_or_for_a_working_copy(tmp_path: Path) -> None:
    bare = _remote(tmp_path)
    mirror = Mirror(bare.as_uri(), "main", tmp_path / "cache")  # never synced: a push would fail
    assert WriteAccess(mirror, has_token=False, registry_sync=False).check(spec_with(on_success="none")) == []
    assert WriteAccess(None, has_token=False, registry_sync=False).check(spec_with()) == []


def test_a_pull_request_needs_a_token(tmp_path: Path) -> None:
    bare = _remote(tmp_path)
    mirror = Mirror(bare.as_uri(), "main", tmp_path / "cache")
    with pytest.raises(WriteAccessDenied, match=r"opens pull requests through the forge's API, which needs a token"):
        WriteAccess(mirror, has_token=False, registry_sync=False).check(spec_with(on_success="pullRequest"))


def test_a_push_that_fails_is_a_refusal_naming_what_needs_it(tmp_path: Path) -> None:
    bare = _remote(tmp_path)
    mirror = Mirror(bare.as_uri(), "main", tmp_path / "cache")
    mirror.sync()
    subprocess.run(["rm", "-rf", str(bare)], check=True)  # the push service cannot even start
    with pytest.raises(WriteAccessDenied) as refused:
        WriteAccess(mirror, has_token=False, registry_sync=False).check(spec_with())
    text = str(refused.value)
    assert text.startswith("the rollout of fraud/scorer (onSuccess: commit pushes to the followed branch) needs "
                           f"write access to branch main of {bare.as_uri()}")
    assert "git push: " in text and "onSuccess: none" in text


def test_the_write_back_uses_the_controllers_ssh_command_for_an_ssh_remote() -> None:
    auth = GitAuth(ssh_command="ssh -i /keys/id -o IdentitiesOnly=yes")
    with git_auth(auth, "ssh://git@forge.example/team/models.git") as (_config, env):
        assert env["GIT_SSH_COMMAND"] == "ssh -i /keys/id -o IdentitiesOnly=yes"
    with git_auth(auth, "https://forge.example/team/models.git") as (_config, env):
        assert "GIT_SSH_COMMAND" not in env
