"""`agent promote` (issue #10): golden edits that keep every other byte of the file, each action,
refusals that write nothing, --dry-run, --commit, --branch, a dirty work tree; --push to a local
bare repository and --open-pr against an in-memory forge (the token never in argv, output or
git config).

The CLI tests run `agent.cli.main` in-process on a git repository made from a copy of
examples/model-repo (fraud/fraud-scorer: versions 11, 12, 13; stable 12; canary 13 at 10%;
version 11 fails the auc gate)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from agent import cli
from agent.forge import ForgeOptions
from agent.forge import _settings as forge_settings
from agent.promotion import Change, PromoteError, edit_model_document
from agent.source import GitAuth, git_auth

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
MODEL = "teams/fraud/models/fraud-scorer.yaml"
MONITOR = "teams/fraud/monitors/fraud-scorer.yaml"


# --- golden edits (pure, no git) ------------------------------------------------------------------

BLOCK = """\
# The scorer. Comments, quoting and order stay as written.
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata:
  name: scorer   # trailing comment
spec:
  format: sklearn
  versions:
    - version: '1'
      uri: s3://b/1/
    - version: '2'   # the new one
      uri: s3://b/2/
  stable: '1'    # what serves
  canary:
    # the canary under test
    version: '2'
    traffic: 10   # percent
  # the gates
  gates: [{metric: auc, min: 0.9}]
  replicas: 2
"""


def test_golden_traffic_keeps_comments_and_quoting() -> None:
    assert edit_model_document(BLOCK, 0, Change("traffic", traffic=35)) == BLOCK.replace(
        "    traffic: 10   # percent\n", "    traffic: 35   # percent\n")


def test_golden_stable_removes_the_canary_block_only() -> None:
    expected = """\
# The scorer. Comments, quoting and order stay as written.
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata:
  name: scorer   # trailing comment
spec:
  format: sklearn
  versions:
    - version: '1'
      uri: s3://b/1/
    - version: '2'   # the new one
      uri: s3://b/2/
  stable: '2'    # what serves
  # the gates
  gates: [{metric: auc, min: 0.9}]
  replicas: 2
"""
    assert edit_model_document(BLOCK, 0, Change("stable")) == expected


def test_golden_rollback_then_new_canary() -> None:
    rolled = edit_model_document(BLOCK, 0, Change("rollback"))
    assert rolled == BLOCK.replace("  canary:\n    # the canary under test\n    version: '2'\n    traffic: 10   # percent\n", "")
    started = edit_model_document(rolled, 0, Change("canary", "2", 5))
    assert started == rolled.replace("  stable: '1'    # what serves\n",
                                     "  stable: '1'    # what serves\n  canary:\n    version: '2'\n    traffic: 5\n")


CRLF = (
    "# Windows line endings\r\n"
    "apiVersion: modelops.dev/v1alpha1\r\n"
    "kind: Model\r\n"
    "metadata:\r\n"
    "    name: scorer\r\n"
    "spec:\r\n"
    "    format: sklearn\r\n"
    "    versions:\r\n"
    "    - {version: \"1\", uri: s3://b/1/}\r\n"
    "    - {version: \"2\", uri: s3://b/2/}\r\n"
    "    stable: \"1\" # stable\r\n"
    "    replicas: 1\r\n"
)


def test_golden_crlf_canary_inserted_with_crlf_and_the_file_indent() -> None:
    expected = (
        "# Windows line endings\r\n"
        "apiVersion: modelops.dev/v1alpha1\r\n"
        "kind: Model\r\n"
        "metadata:\r\n"
        "    name: scorer\r\n"
        "spec:\r\n"
        "    format: sklearn\r\n"
        "    versions:\r\n"
        "    - {version: \"1\", uri: s3://b/1/}\r\n"
        "    - {version: \"2\", uri: s3://b/2/}\r\n"
        "    stable: \"1\" # stable\r\n"
        "    canary:\r\n"
        "        version: \"2\"\r\n"
        "        traffic: 20\r\n"
        "    replicas: 1\r\n"
    )
    edited = edit_model_document(CRLF, 0, Change("canary", "2", 20))
    assert edited == expected
    assert edit_model_document(edited, 0, Change("stable")) == CRLF.replace('stable: "1" #', 'stable: "2" #')
    assert edit_model_document(edited, 0, Change("rollback")) == CRLF


MULTI = """\
# a Monitor and its Model in one file
apiVersion: modelops.dev/v1alpha1
kind: Monitor
metadata: {name: scorer}
spec:
  model: scorer
  rules:
    - {name: slow, type: latency, threshold: 0.5}   # p95
---
# the model
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata: {name: scorer}
spec: {format: sklearn, versions: [{version: "1", uri: a}, {version: "2", uri: b}], stable: "1", canary: {version: "2", traffic: 10}, replicas: 1}
---
# trailing comment-only document
"""


def test_golden_multi_document_flow_style() -> None:
    model_line = ('spec: {format: sklearn, versions: [{version: "1", uri: a}, {version: "2", uri: b}], stable: "1", '
                  'canary: {version: "2", traffic: 10}, replicas: 1}\n')
    assert model_line in MULTI

    def expect(line: str) -> str:
        return MULTI.replace(model_line, line)

    assert edit_model_document(MULTI, 1, Change("traffic", traffic=60)) == expect(
        model_line.replace("traffic: 10", "traffic: 60"))
    assert edit_model_document(MULTI, 1, Change("stable")) == expect(
        'spec: {format: sklearn, versions: [{version: "1", uri: a}, {version: "2", uri: b}], stable: "2", replicas: 1}\n')
    rolled = edit_model_document(MULTI, 1, Change("rollback"))
    assert rolled == expect(
        'spec: {format: sklearn, versions: [{version: "1", uri: a}, {version: "2", uri: b}], stable: "1", replicas: 1}\n')
    assert edit_model_document(rolled, 1, Change("canary", "2", 10)) == MULTI


def test_golden_example_file_promoted() -> None:
    text = (EXAMPLE / MODEL).read_text()
    canary = '  canary:\n    version: "13"\n    traffic: 10   # percent of requests; the stable version takes the rest\n'
    assert canary in text
    assert edit_model_document(text, 0, Change("stable")) == text.replace(
        '  stable: "12"\n' + canary, '  stable: "13"\n')


def test_byte_order_mark_is_kept() -> None:
    assert edit_model_document("\ufeff" + BLOCK, 0, Change("traffic", traffic=1)).startswith("\ufeff# The scorer.")


@pytest.mark.parametrize(("text", "change", "message"), [
    (BLOCK, Change("canary", "7", 10), r"has no version '7' \(versions: 1, 2\)"),
    (BLOCK, Change("canary", "1", 10), "already the stable version"),
    (BLOCK, Change("traffic", traffic=101), "outside 0-100"),
    (BLOCK, Change("traffic", traffic=-1), "outside 0-100"),
    (CRLF, Change("traffic", traffic=5), "has no canary: --traffic alone"),
    (CRLF, Change("stable"), "has no canary: --stable"),
    (CRLF, Change("rollback"), "has no canary: --rollback"),
])
def test_changes_that_do_not_apply(text: str, change: Change, message: str) -> None:
    with pytest.raises(PromoteError, match=message):
        edit_model_document(text, 0, change)


# --- the command on a git repository ----------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE, root)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Model Ops Test")
    git(root, "config", "user.email", "test@modelops.invalid")
    git(root, "config", "commit.gpgsign", "false")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "model repo")
    return root


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def promote(repo: Path, *args: str) -> int:
    return cli.main(["promote", "fraud-scorer", str(repo), *args])


@pytest.mark.parametrize(("args", "stable", "canary"), [
    (["--canary", "13", "--traffic", "40"], '  stable: "12"\n', '    version: "13"\n    traffic: 40   #'),
    (["--traffic", "75"], '  stable: "12"\n', '    version: "13"\n    traffic: 75   #'),
    (["--stable"], '  stable: "13"\n', None),
    (["--rollback"], '  stable: "12"\n', None),
])
def test_each_action_edits_the_file_and_prints_the_plan(repo: Path, capsys: pytest.CaptureFixture[str],
                                                        args: list[str], stable: str, canary: str | None) -> None:
    before = head(repo)
    assert promote(repo, *args) == 0
    text = (repo / MODEL).read_text()
    assert stable in text
    assert (canary in text) if canary else ("  canary:" not in text)
    out = capsys.readouterr().out
    assert "fraud/fraud-scorer:" in out and "InferenceService/fraud/fraud-scorer" in out
    assert head(repo) == before  # no --commit: nothing committed
    assert git(repo, "status", "--porcelain").split() == ["M", MODEL]


def test_gate_failure_is_refused_and_writes_nothing(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, content = head(repo), (repo / MODEL).read_bytes()
    assert promote(repo, "--canary", "11", "--traffic", "10", "--commit") == 2
    err = capsys.readouterr().err
    assert (f"{MODEL}:47: spec.canary.version: promotion gate: canary version '11' has auc=0.928, below the "
            "minimum 0.93") in err
    assert (repo / MODEL).read_bytes() == content and head(repo) == before
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--canary", "99", "--traffic", "5"], "has no version '99'"),
    (["--traffic", "101"], "outside 0-100"),
    (["--canary", "13"], "--canary 13 needs --traffic PCT"),
    ([], "say what to do"),
    (["--stable", "--traffic", "5"], "--stable takes no --canary or --traffic"),
    (["-n", "recsys", "--stable"], "no model 'fraud-scorer' in namespace 'recsys'"),
])
def test_errors_are_one_line_exit_2(repo: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                    message: str) -> None:
    assert promote(repo, *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert git(repo, "status", "--porcelain") == ""


def test_unknown_model_and_no_canary(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["promote", "nope", str(repo), "--rollback"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    assert cli.main(["promote", "ranker", str(repo), "--traffic", "5"]) == 2
    assert "model 'ranker' has no canary" in capsys.readouterr().err


def test_ambiguous_name_lists_the_namespaces(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / MODEL).read_text()
    (repo / "teams/fraud/models/copy.yaml").write_text(
        text.replace("namespace: fraud", "namespace: recsys").replace("serviceAccountName: model-reader\n", ""))
    assert promote(repo, "--stable") == 2
    assert "in several namespaces (fraud, recsys): name one with -n" in capsys.readouterr().err
    assert promote(repo, "-n", "recsys", "--stable") == 0
    assert (repo / MODEL).read_text() == text  # the other namespace's file is the one edited


def test_dry_run_writes_nothing_and_prints_diff_and_message(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = (repo / MODEL).read_bytes()
    assert promote(repo, "--canary", "13", "--traffic", "30", "--commit", "--branch", "p", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"--- a/{MODEL}\n+++ b/{MODEL}\n" in out
    assert "-    traffic: 10   # percent" in out and "+    traffic: 30   # percent" in out
    assert "promote fraud/fraud-scorer: canary 13 at 30%" in out and "Traffic: 30" in out
    assert "dry run: nothing written" in out
    assert (repo / MODEL).read_bytes() == content
    assert git(repo, "status", "--porcelain") == "" and "p" not in git(repo, "branch", "--format=%(refname:short)").split()


def test_commit_makes_one_commit_with_trailers(repo: Path) -> None:
    before = head(repo)
    assert promote(repo, "--canary", "13", "--traffic", "10", "--commit") == 0  # already so: no change
    assert head(repo) == before
    assert promote(repo, "--traffic", "20", "--commit") == 0
    assert git(repo, "rev-list", "--count", f"{before}..HEAD").strip() == "1"
    assert git(repo, "log", "-1", "--format=%B").strip() == (
        "promote fraud/fraud-scorer: canary 13 at 20% (was 10%)\n\n"
        "Model: fraud/fraud-scorer\nAction: traffic\nFrom-Version: 12\nTo-Version: 13\nTraffic: 20")
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [MODEL]
    assert git(repo, "status", "--porcelain") == ""
    trailers = git(repo, "log", "-1", "--format=%(trailers:key=To-Version,valueonly)").strip()
    assert trailers == "13"


def test_stable_commit_message(repo: Path) -> None:
    assert promote(repo, "--stable", "--commit") == 0
    assert git(repo, "log", "-1", "--format=%B").strip() == (
        "promote fraud/fraud-scorer: 13 stable (was 12), canary removed\n\n"
        "Model: fraud/fraud-scorer\nAction: stable\nFrom-Version: 12\nTo-Version: 13\nTraffic: 100")


def test_branch_is_created_and_committed_on(repo: Path) -> None:
    main = head(repo)
    assert promote(repo, "--rollback", "--branch", "promote/fraud-scorer") == 0
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "promote/fraud-scorer"
    assert git(repo, "rev-parse", "HEAD~1").strip() == main
    assert git(repo, "log", "-1", "--format=%s").strip() == (
        "roll back fraud/fraud-scorer: canary 13 removed, 12 stays stable")
    assert git(repo, "rev-parse", "main").strip() == main
    # an existing branch: switched to, and its version of the file is the one edited
    git(repo, "switch", "-q", "main")
    assert promote(repo, "--canary", "13", "--traffic", "50", "--branch", "promote/fraud-scorer") == 0
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "promote/fraud-scorer"
    assert '    version: "13"\n    traffic: 50\n' in (repo / MODEL).read_text()
    assert git(repo, "rev-list", "--count", f"{main}..HEAD").strip() == "2"


def test_branch_refused_on_a_dirty_work_tree(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = repo / MONITOR
    monitor.write_text(monitor.read_text() + "# edited\n")
    content = (repo / MODEL).read_bytes()
    assert promote(repo, "--stable", "--branch", "p") == 2
    assert "uncommitted changes" in capsys.readouterr().err
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert (repo / MODEL).read_bytes() == content


def test_commit_refused_when_the_model_file_has_uncommitted_changes(repo: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    model = repo / MODEL
    model.write_text(model.read_text().replace("    traffic: 10", "    traffic: 15"))
    content, before = model.read_bytes(), head(repo)
    assert promote(repo, "--traffic", "20", "--commit") == 2
    assert "has uncommitted changes" in capsys.readouterr().err
    assert model.read_bytes() == content and head(repo) == before


def test_model_in_a_multi_document_file(repo: Path) -> None:
    model, monitor = repo / MODEL, repo / MONITOR
    combined = monitor.read_text() + "---\n" + model.read_text()
    monitor.unlink()
    model.write_text(combined)
    assert promote(repo, "--stable") == 0
    edited = model.read_text()
    monitor_doc = combined.split("---\n")[0]
    assert edited.startswith(monitor_doc) and '  stable: "13"\n' in edited and "  canary:" not in edited


def test_every_flag_of_promote_has_help() -> None:
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["promote"]  # type: ignore[union-attr, index]
    assert all(a.help for a in sub._actions)


def test_a_refused_commit_leaves_the_file_as_it_was(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    content, before = (repo / MODEL).read_bytes(), head(repo)
    assert promote(repo, "--stable", "--commit") == 2
    assert "is left as it was" in capsys.readouterr().err
    assert (repo / MODEL).read_bytes() == content and head(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_model_repo_in_a_subdirectory_of_the_git_repo(tmp_path: Path) -> None:
    top = tmp_path / "checkout"
    shutil.copytree(EXAMPLE, top / "model-repo")
    git(top, "init", "-q", "-b", "main")
    git(top, "config", "user.name", "Model Ops Test")
    git(top, "config", "user.email", "test@modelops.invalid")
    git(top, "config", "commit.gpgsign", "false")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "model repo")
    assert cli.main(["promote", "fraud-scorer", str(top / "model-repo" / "teams" / "fraud"), "--traffic", "30",
                     "--branch", "canary-30"]) == 0
    assert git(top, "show", "--name-only", "--format=%(trailers:key=Traffic,valueonly)", "HEAD").split() == [
        "30", f"model-repo/{MODEL}"]


# --- --push and --open-pr (issue #10) ------------------------------------------------------------------

TOKEN = "s3cr3t-forge-token-0123456789"


@dataclass(frozen=True)
class FakePull:
    number: int
    url: str
    head: str
    base: str
    title: str
    body: str
    state: str = "open"
    merge_commit: str | None = None
    created: bool = False


class FakeForge:
    """The part of agent.forge.Forge that promote uses, in memory; every call is recorded."""

    def __init__(self) -> None:
        self.pulls: dict[int, FakePull] = {}
        self.calls: list[str] = []
        self.closed = False

    def find_pull(self, head: str, base: str) -> FakePull | None:
        self.calls.append("find_pull")
        return next((p for p in self.pulls.values() if (p.head, p.base) == (head, base)), None)

    def open_pull(self, head: str, base: str, title: str, body: str) -> FakePull:
        self.calls.append("open_pull")
        for p in self.pulls.values():
            if (p.head, p.base) == (head, base):
                self.pulls[p.number] = replace(p, title=title, body=body, created=False)
                return self.pulls[p.number]
        number = len(self.pulls) + 7
        self.pulls[number] = FakePull(number, f"https://forge.invalid/acme/models/pulls/{number}", head, base, title,
                                      body, created=True)
        return self.pulls[number]

    def upsert_comment(self, number: int, marker: str, body: str) -> object:
        raise AssertionError("not used by promote")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def remote(repo: Path, tmp_path: Path) -> Path:
    """A bare repository as `origin` of `repo`, holding main."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    return bare


@pytest.fixture
def forge(monkeypatch: pytest.MonkeyPatch) -> FakeForge:
    fake = FakeForge()
    seen: list[tuple[str, ForgeOptions]] = []

    def connect(remote_url: str, options: ForgeOptions) -> tuple[FakeForge, str, str]:
        seen.append((remote_url, options))
        return fake, TOKEN, "gitea"

    # the seam: the one forge set-up (agent.forge.from_settings) connects through it
    monkeypatch.setattr(forge_settings, "connect_forge", connect)
    fake.seen = seen  # type: ignore[attr-defined]
    return fake


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], list[list[str]]]:
    """Every git child's argv, seen at the process boundary: a `git` first on PATH logs it."""
    real, log, bin_dir = shutil.which("git"), tmp_path / "git-argv.log", tmp_path / "git-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\037' git \"$@\" >> '{log}'\necho >> '{log}'\n"
                       f"exec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: [line.split("\037")[:-1] for line in log.read_text().splitlines()] if log.exists() else []


def remote_refs(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split() for line in out.splitlines())


def test_push_puts_the_branch_on_the_remote_with_the_structured_commit(
        repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = head(repo)
    assert promote(repo, "--traffic", "30", "--branch", "promote/fraud-30", "--push") == 0
    out = capsys.readouterr().out
    assert f"pushed promote/fraud-30 to {remote}" in out
    refs = remote_refs(remote)
    assert refs["refs/heads/promote/fraud-30"] == head(repo) != main
    assert refs["refs/heads/main"] == main
    assert git(remote, "log", "-1", "--format=%B", "promote/fraud-30").strip() == (
        "promote fraud/fraud-scorer: canary 13 at 30% (was 10%)\n\n"
        "Model: fraud/fraud-scorer\nAction: traffic\nFrom-Version: 12\nTo-Version: 13\nTraffic: 30")
    # the same promotion again: nothing to commit, the push is a no-op
    assert promote(repo, "--traffic", "30", "--branch", "promote/fraud-30", "--push") == 0
    assert remote_refs(remote) == refs


def test_push_of_the_current_branch_but_never_the_base(repo: Path, remote: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    main = head(repo)
    assert promote(repo, "--traffic", "30", "--push") == 2
    err = capsys.readouterr().err
    assert "the branch to push, main, is the PR's base (main)" in err and "--branch NAME" in err
    assert head(repo) == main and git(repo, "status", "--porcelain") == ""  # refused before the edit
    git(repo, "switch", "-q", "-c", "work")
    assert promote(repo, "--traffic", "30", "--push", "origin") == 0
    assert remote_refs(remote)["refs/heads/work"] == head(repo) != main


def test_push_to_a_remote_that_is_not_there_writes_nothing(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = (repo / MODEL).read_bytes()
    assert promote(repo, "--stable", "--branch", "p", "--push", "nowhere") == 2
    assert "git ls-remote" in capsys.readouterr().err
    assert (repo / MODEL).read_bytes() == content
    assert "p" not in git(repo, "branch", "--format=%(refname:short)").split()


def test_gate_failure_pushes_nothing(repo: Path, remote: Path, forge: FakeForge,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    refs, before = remote_refs(remote), head(repo)
    assert promote(repo, "--canary", "11", "--traffic", "10", "--branch", "p", "--open-pr") == 2
    assert "promotion gate: canary version '11'" in capsys.readouterr().err
    assert remote_refs(remote) == refs and head(repo) == before
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert forge.calls == [] and forge.closed


def test_open_pr_then_the_same_promotion_updates_it(repo: Path, remote: Path, forge: FakeForge,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert promote(repo, "--traffic", "30", "--branch", "promote/fraud", "--open-pr") == 0
    out = capsys.readouterr().out
    (pr,) = forge.pulls.values()
    assert f"opened PR #{pr.number} (promote/fraud -> main): {pr.url}" in out
    assert (pr.head, pr.base) == ("promote/fraud", "main")
    assert pr.title == "promote fraud/fraud-scorer: canary 13 at 30% (was 10%)"
    assert pr.body.startswith("### Model changes `main` → `promote/fraud`\n")
    assert "| `fraud/fraud-scorer` | updated | canary 10% -&gt; 30%<br>objects 1 updated |" in pr.body
    assert "Model: fraud/fraud-scorer\nAction: traffic\nFrom-Version: 12\nTo-Version: 13\nTraffic: 30\n" in pr.body
    assert "--- main/InferenceService/fraud/fraud-scorer" in pr.body
    assert forge.closed and forge.seen[0][0] == str(remote)  # type: ignore[attr-defined]
    commit = head(repo)
    assert remote_refs(remote)["refs/heads/promote/fraud"] == commit

    # again, from main: no new commit, the push is a no-op, the PR (same title and body) updated
    git(repo, "switch", "-q", "main")
    forge.calls.clear()
    assert promote(repo, "--traffic", "30", "--branch", "promote/fraud", "--open-pr") == 0
    out = capsys.readouterr().out
    assert f"updated PR #{pr.number} (promote/fraud -> main)" in out and "no change" in out
    assert forge.calls == ["find_pull", "open_pull"] and len(forge.pulls) == 1
    assert forge.pulls[pr.number].title == pr.title and forge.pulls[pr.number].body == pr.body
    assert git(repo, "rev-parse", "promote/fraud").strip() == commit
    assert remote_refs(remote)["refs/heads/promote/fraud"] == commit

    # a further change on the branch: a new commit, the PR's title and body follow it
    assert promote(repo, "--traffic", "50", "--branch", "promote/fraud", "--open-pr") == 0
    assert f"updated PR #{pr.number}" in capsys.readouterr().out
    updated = forge.pulls[pr.number]
    assert updated.title == "promote fraud/fraud-scorer: canary 13 at 50% (was 30%)"
    assert "canary 10% -&gt; 50%" in updated.body  # the whole PR against its base
    assert git(repo, "rev-list", "--count", "main..promote/fraud").strip() == "2"


def test_stable_promotion_run_again_updates_the_pr(repo: Path, remote: Path, forge: FakeForge,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert promote(repo, "--stable", "--branch", "promote/stable", "--open-pr") == 0
    commit = head(repo)
    capsys.readouterr()
    assert promote(repo, "--stable", "--branch", "promote/stable", "--open-pr") == 0  # no canary left: still fine
    out = capsys.readouterr().out
    assert "updated PR #7" in out and head(repo) == commit
    assert forge.pulls[7].title == "promote fraud/fraud-scorer: 13 stable (was 12), canary removed"


def test_dry_run_open_pr_touches_nothing(repo: Path, remote: Path, forge: FakeForge,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    content, before, refs = (repo / MODEL).read_bytes(), head(repo), remote_refs(remote)
    assert promote(repo, "--traffic", "30", "--branch", "promote/dry", "--open-pr", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: would push promote/dry to" in out
    assert "dry run: would open a PR promote/dry -> main" in out
    assert "title: promote fraud/fraud-scorer: canary 13 at 30% (was 10%)" in out
    assert "    ### Model changes `main` → `promote/dry`" in out and "    Traffic: 30" in out
    assert (repo / MODEL).read_bytes() == content and head(repo) == before and remote_refs(remote) == refs
    assert git(repo, "status", "--porcelain") == ""
    assert "promote/dry" not in git(repo, "branch", "--format=%(refname:short)").split()
    assert forge.calls == [] and forge.seen == []  # type: ignore[attr-defined]


def test_base_flag_and_the_remote_default_branch(repo: Path, remote: Path, forge: FakeForge) -> None:
    git(repo, "push", "-q", "origin", "main:release")
    git(remote, "symbolic-ref", "HEAD", "refs/heads/release")
    assert promote(repo, "--traffic", "30", "--branch", "a", "--open-pr") == 0
    assert forge.pulls[7].base == "release"
    git(repo, "switch", "-q", "main")
    assert promote(repo, "--traffic", "40", "--branch", "b", "--open-pr", "--base", "main") == 0
    assert forge.pulls[8].base == "main"


def test_flags_that_need_push(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert promote(repo, "--stable", "--base", "main") == 2
    assert "--base need --push or --open-pr" in capsys.readouterr().err
    assert promote(repo, "--stable", "--ca-file", "ca.pem", "--commit") == 2
    assert "--ca-file need --push or --open-pr" in capsys.readouterr().err


def test_missing_token_refuses_before_any_write(repo: Path, remote: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITEA_TOKEN", raising=False)
    git(repo, "remote", "set-url", "origin", "https://git.example.invalid/acme/models.git")
    before = head(repo)
    assert promote(repo, "--stable", "--branch", "p", "--open-pr", "--forge", "gitea") == 2
    assert "environment variable GITEA_TOKEN is not set" in capsys.readouterr().err
    assert head(repo) == before and "p" not in git(repo, "branch", "--format=%(refname:short)").split()


def test_the_token_is_never_in_output_argv_or_git_config(repo: Path, remote: Path, forge: FakeForge,
                                                         git_calls: Callable[[], list[list[str]]],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert promote(repo, "--traffic", "30", "--branch", "p", "--open-pr") == 0
    # a push that fails: the error says so, without the token
    git(repo, "remote", "set-url", "origin", str(remote.parent / "gone.git"))
    assert promote(repo, "--traffic", "40", "--branch", "p", "--open-pr", "--base", "main") == 2
    captured = capsys.readouterr()
    assert "git push failed" in captured.err
    argvs = git_calls()
    assert any("push" in argv for argv in argvs) and not any(TOKEN in a for argv in argvs for a in argv)
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in git(repo, "config", "--list") + git(remote, "config", "--list")
    assert TOKEN not in (repo / ".git" / "config").read_text()


def test_git_auth_hands_the_token_to_git_through_askpass_only(tmp_path: Path) -> None:
    auth = GitAuth(token=TOKEN, username="oauth2", ca_file=tmp_path / "ca.pem")
    assert TOKEN not in repr(auth)
    with git_auth(auth, "https://git.example.invalid/acme/models.git") as (config, env):
        assert config == ["-c", f"http.sslCAInfo={tmp_path / 'ca.pem'}", "-c", "credential.helper="]
        assert env["GIT_SSL_CAINFO"] == str(tmp_path / "ca.pem")  # an inherited one would win over -c
        assert not any(TOKEN in c for c in config)
        script = Path(env["GIT_ASKPASS"])
        assert TOKEN not in script.read_text()
        child = {**os.environ, **env}
        ask = subprocess.run([str(script), "Password for 'https://oauth2@git.example.invalid': "], env=child,
                             capture_output=True, text=True, check=True, timeout=10)
        assert ask.stdout == TOKEN + "\n"
        ask = subprocess.run([str(script), "Username for 'https://git.example.invalid': "], env=child,
                             capture_output=True, text=True, check=True, timeout=10)
        assert ask.stdout == "oauth2\n"
    assert not script.exists()  # the helper is gone after the call
    # ssh and local remotes never get the token
    with git_auth(auth, "git@git.example.invalid:acme/models.git") as (config, env):
        assert env == {"GIT_SSL_CAINFO": str(tmp_path / "ca.pem")}
        assert config == ["-c", f"http.sslCAInfo={tmp_path / 'ca.pem'}"]


def test_push_with_a_ca_file_passes_it_to_git(repo: Path, remote: Path, tmp_path: Path,
                                             git_calls: Callable[[], list[list[str]]]) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    assert promote(repo, "--stable", "--branch", "p", "--push", "--ca-file", str(ca)) == 0
    pushes = [a for a in git_calls() if "push" in a]
    assert pushes and pushes[0][:3] == ["git", "-c", f"http.sslCAInfo={ca}"]
