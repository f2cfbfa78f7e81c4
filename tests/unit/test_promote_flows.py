"""agent.promotion's flows as a library (issue 18), on real git repositories in tmp dirs: the
promote -> push -> PR flow (promote_and_publish) and the registry sync (registry_sync) return
data and report progress through a callback, with no printing; the forge set-up from settings
(agent.forge.from_settings) is the one seam a fake forge enters by."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.errors import AgentError
from agent.forge import ForgeAccess, ForgeOptions, from_settings
from agent.forge import _settings as forge_settings
from agent.promotion import (
    Change,
    PromotionResult,
    SyncItem,
    promote_and_publish,
    registry_sync,
)
from agent.spec import DEFAULT_LOADER, ModelLookupError, find_model
from tests.unit.test_promote import EXAMPLE, MODEL, TOKEN, FakeForge, git, head, remote_refs
from tests.unit.test_registry_sync import FakeMlflow, make_repo


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The example model repo committed on main, with a bare repository as its origin."""
    root = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE, root)
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "Model Ops Test"],
                 ["config", "user.email", "test@modelops.invalid"], ["config", "commit.gpgsign", "false"],
                 ["add", "-A"], ["commit", "-qm", "model repo"]):
        git(root, *args)
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(tmp_path / "remote.git"))
    git(root, "remote", "add", "origin", str(tmp_path / "remote.git"))
    git(root, "push", "-q", "origin", "main")
    return root


@pytest.fixture
def fake_forge(monkeypatch: pytest.MonkeyPatch) -> FakeForge:
    fake = FakeForge()

    def connect(remote_url: str, options: ForgeOptions) -> tuple[FakeForge, str, str]:
        return fake, TOKEN, "gitea"

    monkeypatch.setattr(forge_settings, "connect_forge", connect)
    return fake


def test_promote_and_publish_pushes_opens_the_pr_and_reports_progress(work: Path, fake_forge: FakeForge,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    steps: list[tuple[str, bool, bool]] = []

    def progress(step: str, result: PromotionResult) -> None:
        steps.append((step, result.outcome.commit is not None, result.pushed))

    result = promote_and_publish(work, "fraud-scorer", None, Change("traffic", traffic=30), branch="p",
                                 open_pr=True, progress=progress)
    assert steps == [("edited", True, False), ("pushed", True, True)]
    assert result.target is not None and (result.target.head, result.target.base) == ("p", "main")
    assert remote_refs(work.parent / "remote.git")["refs/heads/p"] == head(work) == result.outcome.commit
    assert result.pull_request is not None and result.pull_request.created
    assert result.pull_request.title == "promote fraud/fraud-scorer: canary 13 at 30% (was 10%)"
    assert fake_forge.closed and capsys.readouterr() == ("", "")  # no printing inside


def test_promote_and_publish_dry_run_says_what_it_would_open(work: Path, fake_forge: FakeForge) -> None:
    before = head(work)
    result = promote_and_publish(work, "fraud-scorer", None, Change("stable"), branch="p", open_pr=True,
                                 dry_run=True)
    assert not result.pushed and result.pull_request is None and fake_forge.calls == []
    assert result.would_open is not None and result.would_open[0].startswith("promote fraud/fraud-scorer: 13 stable")
    assert "<sub>Opened by `agent promote --open-pr`.</sub>" in result.would_open[1]
    assert head(work) == before and (work / MODEL).read_text() == result.outcome.before


def test_promote_and_publish_refuses_before_writing(work: Path, fake_forge: FakeForge) -> None:
    before = head(work)
    with pytest.raises(AgentError, match=r"the branch to push, main, is the PR's base \(main\)"):
        promote_and_publish(work, "fraud-scorer", None, Change("stable"), push="origin")
    assert head(work) == before and git(work, "status", "--porcelain") == ""


def test_from_settings_is_the_one_forge_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_settings(ForgeOptions()) == ForgeAccess(forge=None, token=None, username="x-access-token")
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    access = from_settings(ForgeOptions(kind="gitlab", token_env="MY_TOKEN"))
    assert (access.forge, access.token, access.username) == (None, TOKEN, "oauth2")
    assert TOKEN not in repr(access)
    monkeypatch.delenv("GITEA_TOKEN", raising=False)
    with pytest.raises(AgentError, match="GITEA_TOKEN"):
        from_settings(ForgeOptions(kind="gitea"), "https://git.example.invalid/acme/models.git")


def test_find_model_is_the_one_lookup(work: Path) -> None:
    from agent.source import read_snapshot

    snapshot = read_snapshot(work)
    spec = DEFAULT_LOADER.load(dict(snapshot.files), snapshot.problems)
    assert find_model(spec, "fraud-scorer").key == "fraud/fraud-scorer"
    with pytest.raises(ModelLookupError, match="no model 'nope' in namespace x in the repo") as info:
        find_model(spec, "nope", "x")
    assert info.value.namespaces == []


def test_registry_sync_commits_pushes_and_reports_each_item(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@t.invalid")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, timeout=60)
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    registries: dict[str, Any] = {"mlflow": FakeMlflow({"champion": "2"}, {})}
    seen: list[tuple[str, str]] = []

    def progress(step: str, item: SyncItem) -> None:
        seen.append((step, item.proposal.model))

    dry = registry_sync(repo, "champion", push="origin", dry_run=True, registries=registries, progress=progress)
    assert seen == [("planned", "reg/scorer")] and dry.items[0].published is None
    assert "registry/reg-scorer-2" not in git(repo, "branch", "--list")
    seen.clear()
    result = registry_sync(repo, "champion", push="origin", registries=registries, progress=progress)
    assert seen == [("planned", "reg/scorer"), ("published", "reg/scorer")]
    [item] = result.items
    assert item.published is not None and item.published.pushed and item.published.commit is not None
    assert result.head == git(repo, "rev-parse", "HEAD").strip()
    assert git(bare, "rev-parse", "registry/reg-scorer-2").strip() == item.published.commit
    again = registry_sync(repo, "champion", push="origin", registries=registries)
    assert again.items[0].published is not None and again.items[0].published.commit is None  # no new commit
    registries["mlflow"].aliases["champion"] = "1"
    assert registry_sync(repo, "champion", registries=registries).items[0].proposal.up_to_date
