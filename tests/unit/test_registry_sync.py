"""`agent registry sync` (issue #12): the version-entry insertion keeps every other byte of the
file (block, flow, flow items, comments, CRLF, the example repo's style); the decisions against
a fake registry (up to date, a new entry, an existing entry, --as stable, a gate the run misses,
no registry configured); the CLI on a git repo: a commit on its own branch with the work tree
untouched, run again: no new commit; --push to a local bare repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.errors import ValidationFailed
from agent.promotion import NewVersion, PromoteError, SyncError, add_version_entry, plan_sync
from agent.registry import RegistryError, ResolvedVersion

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false",
       "-c", "init.defaultBranch=main"]


# --- golden insertions (pure) -------------------------------------------------------------------------

COMMENTED = """\
# The scorer follows MLflow. Comments, quoting and order stay as written.
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata:
  name: scorer   # trailing comment
spec:
  format: sklearn
  versions:
    # pinned by the last sync
    - version: '1'
      registry:
        mlflow:
          name: scorer
          version: '1'   # the run of March
  # after the versions
  stable: '1'    # what serves
  gates: [{metric: auc, min: 0.9}]
"""

COMMENTED_AFTER = """\
# The scorer follows MLflow. Comments, quoting and order stay as written.
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata:
  name: scorer   # trailing comment
spec:
  format: sklearn
  versions:
    # pinned by the last sync
    - version: '1'
      registry:
        mlflow:
          name: scorer
          version: '1'   # the run of March
    - version: '2'
      registry:
        mlflow:
          name: scorer
          version: '2'
  # after the versions
  stable: '1'    # what serves
  gates: [{metric: auc, min: 0.9}]
"""


def test_golden_block_with_comments_and_quoting() -> None:
    assert add_version_entry(COMMENTED, 0, NewVersion("2", "mlflow", "scorer", "2")) == COMMENTED_AFTER


def test_golden_example_repo_style() -> None:
    text = (EXAMPLE / "teams/fraud/models/fraud-scorer.yaml").read_text()
    anchor = '        calibration_error: 0.027\n  stable: "12"\n'
    assert text.count(anchor) == 1
    expected = text.replace(anchor, '        calibration_error: 0.027\n    - version: "14"\n      registry:\n'
                                    '        mlflow:\n          name: fraud-scorer\n          version: "14"\n'
                                    '  stable: "12"\n')
    assert add_version_entry(text, 0, NewVersion("14", "mlflow", "fraud-scorer", "14")) == expected


def test_golden_flow_reference_style_is_kept() -> None:
    text = ('spec:\n  versions:\n  - version: "1"\n    registry:\n      mlflow: {name: s, version: "1"}\n'
            '  stable: "1"\n')
    assert add_version_entry(text, 0, NewVersion("2", "mlflow", "s", "2")) == text.replace(
        '  stable: "1"\n', '  - version: "2"\n    registry:\n      mlflow: {name: s, version: "2"}\n  stable: "1"\n')
    text = 'spec:\n  versions:\n    - version: "1"\n      registry: {mlflow: {name: s, version: "1"}}\n  stable: "1"\n'
    assert add_version_entry(text, 0, NewVersion("2", "mlflow", "s", "2")) == text.replace(
        '  stable: "1"\n', '    - version: "2"\n      registry: {mlflow: {name: s, version: "2"}}\n  stable: "1"\n')


def test_golden_flow_items_and_flow_sequence() -> None:
    text = 'spec:\n  versions:\n    - {version: "1", registry: {mlflow: {name: s, version: "1"}}}   # c\n  stable: "1"\n'
    assert add_version_entry(text, 0, NewVersion("2", "mlflow", "s", "2")) == text.replace(
        '  stable', '    - {version: "2", registry: {mlflow: {name: s, version: "2"}}}\n  stable')
    text = "spec: {versions: [{version: '1', registry: {mlflow: {name: s, version: '1'}}}], stable: '1'}\n"
    assert add_version_entry(text, 0, NewVersion("2", "mlflow", "s", "2")) == text.replace(
        "}}}]", "}}}, {version: '2', registry: {mlflow: {name: s, version: '2'}}}]")


def test_golden_crlf_no_final_newline_and_other_documents() -> None:
    text = ("kind: Other\r\n---\r\nspec:\r\n  versions:\r\n  - version: \"1\"\r\n    registry:\r\n      mlflow:\r\n"
            "        name: s\r\n        version: 1\r\n  stable: \"1\"")
    out = add_version_entry(text, 1, NewVersion("2", "mlflow", "s", "2"))
    assert out == text.replace('  stable: "1"', '  - version: "2"\r\n    registry:\r\n      mlflow:\r\n'
                                                '        name: s\r\n        version: "2"\r\n  stable: "1"')
    last = 'spec:\n  stable: "1"\n  versions:\n  - version: "1"\n    uri: s3://b/1/'
    assert add_version_entry(last, 0, NewVersion("2", "mlflow", "s", "2")) == (
        last + '\n  - version: "2"\n    registry:\n      mlflow:\n        name: s\n        version: "2"')


def test_golden_gto_with_repo() -> None:
    text = 'spec:\n  versions:\n  - version: v1.0.0\n    registry:\n      gto: {name: s, version: v1.0.0, repo: ../r}\n'
    assert add_version_entry(text, 0, NewVersion("v1.1.0", "gto", "s", "v1.1.0", repo="../r")) == text + (
        "  - version: v1.1.0\n    registry:\n      gto: {name: s, version: v1.1.0, repo: \"../r\"}\n")  # quoted: safe


def test_insertion_refusals() -> None:
    with pytest.raises(PromoteError, match="already has a version '1'"):
        add_version_entry(COMMENTED, 0, NewVersion("1", "mlflow", "scorer", "1"))
    with pytest.raises(PromoteError, match=r"spec\.versions is not a non-empty list"):
        add_version_entry("spec:\n  stable: '1'\n", 0, NewVersion("2", "mlflow", "s", "2"))


# --- decisions with a fake registry --------------------------------------------------------------------

class FakeMlflow:
    def __init__(self, aliases: dict[str, str], auc: dict[str, float]) -> None:
        self.aliases, self.auc = aliases, auc

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None) -> ResolvedVersion:
        v = version if version is not None else self.aliases.get(str(alias))
        if v is None:
            raise RegistryError(f"mlflow {name}@{alias}: no such alias")
        return ResolvedVersion(registry="mlflow", name=name, version=v, uri=f"s3://models/{name}/{v}/", run_id=f"r{v}",
                               digest=None, alias=alias, metrics={"auc": self.auc.get(v, 0.99)})


API = "modelops.dev/v1alpha1"
REPO_YAML = f"""\
apiVersion: {API}
kind: RepositoryConfig
metadata: {{name: sync-test}}
spec:
  policy: {{allowedNamespaces: [reg]}}
  registries:
    mlflow: {{trackingUri: http://127.0.0.1:9}}
"""
RUNTIME = f"""\
apiVersion: {API}
kind: ServingRuntime
metadata: {{name: sklearn-server}}
spec: {{image: registry.example/sklearn-server:1.5, formats: [sklearn]}}
"""
MODEL = f"""\
# The scorer pins MLflow versions; `agent registry sync --alias champion` proposes new ones.
apiVersion: {API}
kind: Model
metadata:
  name: scorer
  namespace: reg
spec:
  format: sklearn
  runtime: sklearn-server
  backend: kserve
  replicas: 1
  versions:
    - version: "1"
      registry:
        mlflow:
          name: scorer-reg
          version: "1"
    - version: old
      uri: s3://models/old/
      evaluation: {{auc: 0.95}}
  stable: "1"   # pinned
  gates:
    - metric: auc
      min: 0.9
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, model: str = MODEL) -> Path:
    for rel, text in (("repo.yaml", REPO_YAML), ("runtimes/sklearn.yaml", RUNTIME), ("models/scorer.yaml", model)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pin 1")
    return root


def test_up_to_date(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    [p] = plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "1"}, {})})
    assert p.up_to_date and p.target == "1" and p.current == "1"


def test_new_entry_and_canary(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    [p] = plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {})})
    assert not p.up_to_date and p.new_entry is not None and p.version == "2"
    assert p.branch == "registry/reg-scorer-2"
    assert p.after == MODEL.replace('  stable: "1"   # pinned\n',
                                    '    - version: "2"\n      registry:\n        mlflow:\n          name: scorer-reg\n'
                                    '          version: "2"\n  stable: "1"   # pinned\n  canary:\n    version: "2"\n'
                                    '    traffic: 10\n')
    assert "Registry: mlflow scorer-reg@champion -> 2\n" in p.message
    assert "To-Version: 2" in p.message and "Traffic: 10" in p.message
    assert "s3://models/scorer-reg/2/" in repr(p.plan.changed)  # the canary serves version 2's artifact


def test_existing_entry_is_reused_and_as_stable(tmp_path: Path) -> None:
    model = MODEL.replace("    - version: old\n", "    - version: two\n      registry: {mlflow: {name: scorer-reg, "
                                                    "version: \"2\"}}\n    - version: old\n")
    repo = make_repo(tmp_path / "r", model)
    [p] = plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {})}, as_="stable")
    assert p.new_entry is None and p.version == "two"
    assert p.after == model.replace('  stable: "1"   # pinned', '  stable: "two"   # pinned')
    [p] = plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {})}, traffic=25)
    assert p.after.endswith('  canary:\n    version: "two"\n    traffic: 25\n  gates:\n    - metric: auc\n      min: 0.9\n')


def test_canary_already_in_git_is_up_to_date(tmp_path: Path) -> None:
    model = MODEL.replace('  stable: "1"   # pinned\n', '    - version: "2"\n      registry: {mlflow: {name: scorer-reg, '
                                                         'version: "2"}}\n  stable: "1"\n  canary: {version: "2", '
                                                         'traffic: 10}\n')
    repo = make_repo(tmp_path / "r", model)
    [p] = plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {})})
    assert p.up_to_date and "canary" in p.reason


def test_a_gate_the_run_misses_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    with pytest.raises(ValidationFailed, match=r"auc=0\.8"):
        plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {"2": 0.8})})


def test_refusals(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", MODEL.replace("version: old", 'version: "2"'))
    with pytest.raises(SyncError, match="version name '2' is taken"):
        plan_sync(repo, "champion", registries={"mlflow": FakeMlflow({"champion": "2"}, {})})
    with pytest.raises(RegistryError, match="no mlflow registry is configured"):
        plan_sync(repo, "champion", registries={})
    with pytest.raises(RegistryError, match="no such alias"):
        plan_sync(repo, "nope", registries={"mlflow": FakeMlflow({}, {})})


def test_filters(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    fake = {"mlflow": FakeMlflow({"champion": "2"}, {})}
    assert plan_sync(repo, "champion", registries=fake, names=["other"]) == []
    assert plan_sync(repo, "champion", registries=fake, namespace="x") == []


# --- the command, on a git repo --------------------------------------------------------------------------

@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> FakeMlflow:
    fake = FakeMlflow({"champion": "2"}, {})
    monkeypatch.setattr("agent.engine.registries_for", lambda spec, repo: {"mlflow": fake})
    return fake


def test_cli_commits_on_a_branch_work_tree_untouched(tmp_path: Path, fake_registry: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@t.invalid")
    (repo / "notes.txt").write_text("uncommitted work stays\n")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion"]) == 0
    out = capsys.readouterr().out
    assert "committed" in out and "registry/reg-scorer-2" in out
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert (repo / "models/scorer.yaml").read_text() == MODEL
    assert git(repo, "rev-parse", "registry/reg-scorer-2^").strip() == head
    shown = git(repo, "show", "registry/reg-scorer-2:models/scorer.yaml")
    assert 'canary:\n    version: "2"\n    traffic: 10\n' in shown
    assert "Registry: mlflow scorer-reg@champion -> 2" in git(repo, "log", "-1", "--format=%B", "registry/reg-scorer-2")
    tip = git(repo, "rev-parse", "registry/reg-scorer-2").strip()
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion"]) == 0
    assert "has this change already: no new commit" in capsys.readouterr().out
    assert git(repo, "rev-parse", "registry/reg-scorer-2").strip() == tip
    fake_registry.aliases["champion"] = "1"
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_push_to_a_bare_remote_and_dry_run(tmp_path: Path, fake_registry: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "r")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@t.invalid")
    bare = tmp_path / "remote.git"
    subprocess.run([*GIT, "init", "-q", "--bare", str(bare)], check=True)
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion", "--push", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: would commit on branch registry/reg-scorer-2" in out and "+  canary:" in out
    assert "registry/reg-scorer-2" not in git(repo, "branch", "--list")
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion", "--push"]) == 0
    assert "pushed registry/reg-scorer-2" in capsys.readouterr().out
    assert git(bare, "rev-parse", "registry/reg-scorer-2") == git(repo, "rev-parse", "registry/reg-scorer-2")
    git(repo, "branch", "-D", "registry/reg-scorer-2")  # a fresh clone: the branch is only on the remote
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion", "--push"]) == 0
    assert "no new commit" in capsys.readouterr().out


def test_cli_refusals(tmp_path: Path, fake_registry: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "r")
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion", "--as", "stable", "--traffic", "5"]) == 2
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion", "--forge", "gitea"]) == 2
    assert "need --push or --open-pr" in capsys.readouterr().err
    fake_registry.auc["2"] = 0.5
    assert cli.main(["registry", "sync", str(repo), "--alias", "champion"]) == 2
    assert "promotion gate" in capsys.readouterr().err
    assert "registry/reg-scorer-2" not in git(repo, "branch", "--list")
