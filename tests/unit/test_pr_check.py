"""PR checks (issue #10): `agent pr-comment` (one comment per marker, stdin, truncation), the
GitHub composite action and the GitLab template (parsed; every agent command and flag they run
exists), and tools/pr-check.sh run for real on a git repository with a PR branch, its comment
step recorded instead of posted."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.forge import ForgeOptions, repo_url
from agent.forge import _settings as forge_settings
from agent.promotion import PR_BODY_LIMIT, truncate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"
MODEL = "teams/fraud/models/fraud-scorer.yaml"
SCRIPT = ROOT / "tools" / "pr-check.sh"
TOKEN = "s3cr3t-forge-token-0123456789"


class FakeComment:
    def __init__(self, id: int, url: str, created: bool) -> None:
        self.id, self.url, self.created = id, url, created


class CommentForge:
    """upsert_comment in memory: one comment per (PR, marker)."""

    def __init__(self) -> None:
        self.comments: dict[tuple[int, str], tuple[int, str]] = {}
        self.closed = 0

    def upsert_comment(self, number: int, marker: str, body: str) -> FakeComment:
        key = (number, marker)
        created = key not in self.comments
        cid = self.comments[key][0] if not created else 100 + len(self.comments)
        self.comments[key] = (cid, body)
        return FakeComment(cid, f"https://forge.invalid/acme/models/pulls/{number}#issuecomment-{cid}", created)

    def find_pull(self, head: str, base: str) -> None:
        raise AssertionError("not used")

    def open_pull(self, head: str, base: str, title: str, body: str) -> None:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def forge(monkeypatch: pytest.MonkeyPatch) -> tuple[CommentForge, list[tuple[str, ForgeOptions]]]:
    fake = CommentForge()
    seen: list[tuple[str, ForgeOptions]] = []

    def connect(remote_url: str, options: ForgeOptions) -> tuple[CommentForge, str, str]:
        seen.append((remote_url, options))
        return fake, TOKEN, options.kind or "github"

    # the seam: the one forge set-up (agent.forge.from_settings) connects through it
    monkeypatch.setattr(forge_settings, "connect_forge", connect)
    return fake, seen


# --- agent pr-comment ---------------------------------------------------------------------------

def test_pr_comment_creates_then_updates_one_comment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     forge: tuple[CommentForge, list[Any]]) -> None:
    fake, seen = forge
    body = tmp_path / "plan.md"
    body.write_text("### Model changes\n\nNo model changes.\n")
    args = ["pr-comment", "12", "--body-file", str(body), "--forge", "github", "--repo", "acme/models",
            "--token-env", "MY_TOKEN"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out == "created comment https://forge.invalid/acme/models/pulls/12#issuecomment-100\n"
    body.write_text("### Model changes\n\nsomething else\n")
    assert cli.main(args) == 0
    assert capsys.readouterr().out == "updated comment https://forge.invalid/acme/models/pulls/12#issuecomment-100\n"
    assert fake.comments == {(12, "plan"): (100, "### Model changes\n\nsomething else\n")}
    assert fake.closed == 2
    url, options = seen[0]
    assert url == "https://github.com/acme/models.git"
    assert options == ForgeOptions(kind="github", token_env="MY_TOKEN")
    assert cli.main([*args, "--marker", "live"]) == 0
    assert "created comment" in capsys.readouterr().out and len(fake.comments) == 2


def test_pr_comment_reads_stdin_and_defaults_to_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       forge: tuple[CommentForge, list[Any]]) -> None:
    fake, seen = forge
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@gitea.example.invalid:acme/models.git"],
                   check=True, timeout=60)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    assert cli.main(["pr-comment", "3", "--body-file", "-", "--forge", "gitea", "--ca-file", "ca.pem"]) == 0
    assert fake.comments[(3, "plan")][1] == "from stdin\n"
    assert seen[0] == ("git@gitea.example.invalid:acme/models.git",
                       ForgeOptions(kind="gitea", ca_file=Path("ca.pem")))
    assert cli.main(["pr-comment", "3", "--body-file", "-", "--remote", "https://h.invalid/a/b.git"]) == 2
    assert "is empty: nothing to post" in capsys.readouterr().err  # stdin is used up


def test_pr_comment_truncates_a_long_body(tmp_path: Path, forge: tuple[CommentForge, list[Any]]) -> None:
    fake, _ = forge
    lines = ["### Model changes", "", "<details><summary>update</summary>", "", "```diff"]
    lines += [f"+ line {n:06d} " + "x" * 60 for n in range(2000)]
    lines += ["```", "</details>", ""]
    body = tmp_path / "plan.md"
    body.write_text("\n".join(lines))
    assert len(body.read_text()) > 100_000
    assert cli.main(["pr-comment", "5", "--body-file", str(body), "--remote",
                     "https://github.com/acme/models.git"]) == 0
    posted = fake.comments[(5, "plan")][1]
    assert len(posted) <= PR_BODY_LIMIT
    assert posted.startswith("### Model changes\n")
    head, _, note = posted.partition("**Truncated:**")
    assert head.endswith("```\n</details>\n\n\n")  # the fence and the <details> closed before the note
    assert "characters; only the first part is shown" in note


def test_truncate_keeps_a_short_body_and_closes_longer_fences() -> None:
    assert truncate("short\n") == "short\n"
    text = "intro\n`````text\n" + "a ``` b\n" * 20 + "`````\n" + "tail\n" * 10
    cut = truncate(text, limit=300)
    assert len(cut) <= 300 and "\n`````\n" in cut.split("**Truncated:**")[0]


@pytest.mark.parametrize(("args", "message"), [
    (["0", "--body-file", "{body}", "--repo", "a/b", "--forge", "github"], "0 is not a pull request number"),
    (["1", "--body-file", "{missing}", "--repo", "a/b", "--forge", "github"], "cannot read --body-file"),
    (["1", "--body-file", "{body}", "--repo", "a", "--forge", "github"], "--repo 'a' is not OWNER/NAME"),
    (["1", "--body-file", "{body}", "--repo", "a/b", "--forge", "gitea"], "needs --api-url URL"),
    (["1", "--body-file", "{body}", "--repo", "a/b", "--forge", "github", "--marker", "a b"], "--marker 'a b'"),
])
def test_pr_comment_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               forge: tuple[CommentForge, list[Any]], args: list[str],
                                               message: str) -> None:
    body = tmp_path / "plan.md"
    body.write_text("plan\n")
    argv = [a.format(body=body, missing=tmp_path / "missing.md") for a in args]
    assert cli.main(["pr-comment", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and TOKEN not in err
    assert forge[0].comments == {}


def test_pr_comment_remote_and_repo_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pr-comment", "1", "--body-file", "-", "--remote", "https://github.com/a/b", "--repo", "a/b"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_pr_comment_without_a_token_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    body = tmp_path / "plan.md"
    body.write_text("plan\n")
    assert cli.main(["pr-comment", "4", "--body-file", str(body), "--repo", "group/sub/models", "--forge", "gitlab",
                     "--api-url", "https://gitlab.example.invalid/api/v4"]) == 2
    assert "environment variable GITLAB_TOKEN is not set" in capsys.readouterr().err


def test_repo_url() -> None:
    assert repo_url("acme/models", "github", None) == "https://github.com/acme/models.git"
    assert repo_url("acme/models", "github", "https://api.github.com") == "https://github.com/acme/models.git"
    assert repo_url("g/sub/models", "gitlab", "https://gitlab.example.invalid/api/v4") == (
        "https://gitlab.example.invalid/g/sub/models.git")
    assert repo_url("acme/models", "gitea", "http://127.0.0.1:3000/api/v1") == "http://127.0.0.1:3000/acme/models.git"


# --- the GitHub action and the GitLab template ----------------------------------------------------

def _subcommands() -> dict[str, set[str]]:
    """Every subcommand of the real parser and its option strings."""
    return {" ".join(path): {f for a in cli.options(parser) for f in a.option_strings}
            for path, parser, _ in cli.command_tree(cli.build_parser()) if path}


def _agent_calls(text: str) -> list[list[str]]:
    """The agent command lines: in a shell script `"$agent" SUB ...` (continuations joined,
    comments skipped); in a CI file its `# runs: agent SUB ...; agent SUB ...` comment lines."""
    joined = re.sub(r"\\\n\s*", " ", text)
    calls = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not re.match(r"#\s+(runs:\s+)?agent\s", stripped):
                continue
            pattern = r"(?:^|[\s;:])agent\s+([a-z][a-z-]+)([^;]*)"
        else:
            pattern = r'"\$agent"\s+([a-z][a-z-]+)([^;#]*)'
        for match in re.finditer(pattern, stripped):
            calls.append([match.group(1), *re.findall(r"(?<![\w-])--[a-z][a-z-]*", match.group(2))])
    return calls


def _check_calls(text: str, expected: set[str]) -> None:
    known = _subcommands()
    calls = _agent_calls(text)
    assert {c[0] for c in calls} >= expected, calls
    for sub, *flags in calls:
        assert sub in known, f"agent {sub}: no such subcommand"
        assert set(flags) <= known[sub], f"agent {sub}: unknown flags {set(flags) - known[sub]}"


def test_the_script_runs_existing_commands_and_flags() -> None:
    text = SCRIPT.read_text()
    _check_calls(text, {"validate", "diff", "pr-comment"})
    assert os.access(SCRIPT, os.X_OK)
    assert "--base" in text and "-o markdown" in text and "--body-file" in text


def test_action_yml() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["name"] and action["description"]
    inputs = action["inputs"]
    assert set(inputs) == {"path", "base", "kubeconfig", "python-version", "token"}
    assert inputs["path"]["default"] == "." and inputs["base"]["default"] == "${{ github.base_ref }}"
    assert inputs["token"]["default"] == "${{ github.token }}" and inputs["kubeconfig"]["default"] == ""
    assert all(spec.get("description") for spec in inputs.values())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    runs = [s for s in steps if "run" in s]
    assert all(s.get("shell") == "bash" for s in runs)
    for step in runs:  # no ${{ }} inside a script: inputs reach it through env (no script injection)
        assert "${{" not in step["run"]
    install = next(s for s in runs if "pip install" in s["run"])
    assert install["env"]["AGENT_SOURCE"] == "${{ github.action_path }}"
    plan = next(s for s in runs if "pr-check.sh" in s["run"])
    env = plan["env"]
    assert env["AGENT_PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    assert env["AGENT_PR_REPO"] == "${{ github.repository }}" and env["AGENT_PR_FORGE"] == "github"
    assert env["AGENT_PR_TOKEN_ENV"] == "GITHUB_TOKEN" and env["GITHUB_TOKEN"] == "${{ inputs.token }}"
    assert env["AGENT_PR_BASE"] == "${{ inputs.base }}" and env["AGENT_PR_KUBECONFIG"] == "${{ inputs.kubeconfig }}"
    assert action["outputs"]["changes"]["value"] == "${{ steps.plan.outputs.changes }}"
    assert plan["id"] == "plan"
    _check_calls((ROOT / "action.yml").read_text(), {"validate", "diff", "pr-comment"})


def test_gitlab_template() -> None:
    text = (ROOT / "ci" / "gitlab" / "agent-pr-check.yml").read_text()
    doc = yaml.safe_load(text)
    job = doc["agent-pr-check"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    script = "\n".join(job["script"])
    for variable in ("$CI_MERGE_REQUEST_IID", "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "$CI_PROJECT_PATH",
                     "$CI_API_V4_URL", "AGENT_PR_TOKEN_ENV=AGENT_GITLAB_TOKEN", "AGENT_PR_FORGE=gitlab"):
        assert variable in script
    assert "tools/pr-check.sh" in script and "pip install" in script
    assert "AGENT_GITLAB_TOKEN" not in yaml.safe_dump(job.get("variables", {}))  # a masked variable, set elsewhere
    _check_calls(text, {"validate", "diff", "pr-comment"})


# --- tools/pr-check.sh on a real repository --------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A PR checkout: origin (bare) has main; the work tree is the PR branch with the canary at 30%."""
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "init", "-q", "-b", "main")
    for key, value in (("user.name", "t"), ("user.email", "t@modelops.invalid"), ("commit.gpgsign", "false")):
        git(work, "config", key, value)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "model repo")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    git(work, "switch", "-q", "-c", "pr")
    model = work / MODEL
    model.write_text(model.read_text().replace("    traffic: 10   #", "    traffic: 30   #"))
    git(work, "commit", "-qam", "canary at 30%")
    git(work, "update-ref", "-d", "refs/remotes/origin/main")  # as a shallow CI checkout: no base yet
    return work


def run_check(work: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """tools/pr-check.sh with an `agent` that runs this checkout's agent but records pr-comment."""
    record = tmp_path / "comment.txt"
    wrapper = tmp_path / "agent"
    wrapper.write_text(f"""#!/bin/sh
if [ "$1" = pr-comment ]; then
  printf '%s\\n' "$*" > {shlex.quote(str(record))}
  exit 0
fi
exec {shlex.quote(sys.executable)} -m agent "$@"
""")
    wrapper.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "GITHUB_"))}
    environ.update({"AGENT_BIN": str(wrapper), "AGENT_PR_BASE": "main", "AGENT_PR_OUT": str(tmp_path / "plan.md"),
                    "PYTHONPATH": str(ROOT), **env})
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=work, env=environ, capture_output=True, text=True, timeout=300)
    return proc, record.read_text() if record.exists() else ""


def test_pr_check_posts_the_plan(checkout: Path, tmp_path: Path) -> None:
    output = tmp_path / "github_output"
    proc, comment = run_check(checkout, tmp_path, AGENT_PR_NUMBER="12", AGENT_PR_FORGE="github",
                              AGENT_PR_REPO="acme/models", AGENT_PR_TOKEN_ENV="GITHUB_TOKEN",
                              GITHUB_OUTPUT=str(output))
    assert proc.returncode == 0, proc.stderr
    plan = (tmp_path / "plan.md").read_text()
    assert plan.startswith("### Model changes `")
    assert "| `fraud/fraud-scorer` | updated | canary 10% -&gt; 30%" in plan
    assert comment == (f"pr-comment 12 --body-file {tmp_path / 'plan.md'} --marker plan --forge github --repo "
                       "acme/models --token-env GITHUB_TOKEN\n")
    assert output.read_text() == "changes=true\n"


def test_pr_check_fails_on_an_invalid_repo_after_commenting(checkout: Path, tmp_path: Path) -> None:
    model = checkout / MODEL
    model.write_text(model.read_text().replace("    traffic: 30   #", "    traffic: 250   #"))
    git(checkout, "commit", "-qam", "too much traffic")
    proc, comment = run_check(checkout, tmp_path, AGENT_PR_NUMBER="12")
    assert proc.returncode == 1
    plan = (tmp_path / "plan.md").read_text()
    assert "the model repo is invalid" in plan and f"{MODEL}:" in plan and "spec.canary.traffic" in plan
    assert "\n```text\n" in plan
    assert comment.startswith("pr-comment 12 --body-file")


def test_pr_check_without_a_number_writes_the_plan_only(checkout: Path, tmp_path: Path) -> None:
    git(checkout, "switch", "-q", "main")
    git(checkout, "switch", "-q", "-c", "same")
    proc, comment = run_check(checkout, tmp_path, AGENT_PR_BASE_REF="main")
    assert proc.returncode == 0, proc.stderr
    assert "No model changes." in (tmp_path / "plan.md").read_text() and comment == ""
    proc, _ = run_check(checkout, tmp_path, AGENT_PR_BASE="")
    assert proc.returncode == 2 and "AGENT_PR_BASE" in proc.stderr


# --- agent run --git-ca-file -------------------------------------------------------------------------

@pytest.mark.parametrize("from_env", [False, True])
def test_run_passes_the_git_ca_file_to_the_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       from_env: bool) -> None:
    import signal

    import agent.controller

    seen: list[Any] = []

    class FakeController:
        def __init__(self, config: Any) -> None:
            seen.append(config)

        def run(self) -> int:
            return 0

        def stop(self) -> None:
            pass

    monkeypatch.setattr(agent.controller, "Controller", FakeController)
    monkeypatch.setattr(signal, "signal", lambda *_a: None)  # the test's own handlers stay
    ca = tmp_path / "ca.pem"
    argv = ["run", "--repo", "https://git.example.invalid/acme/models.git"]
    if from_env:
        monkeypatch.setenv("AGENT_GIT_CA_FILE", str(ca))
    else:
        argv += ["--git-ca-file", str(ca)]
    assert cli.main(argv) == 0
    assert seen[0].credentials is not None and seen[0].credentials.ca_file == ca
