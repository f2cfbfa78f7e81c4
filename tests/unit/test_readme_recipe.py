"""The README's CI recipe ("PR-driven model promotion") runs as CI runs it: under `bash -e`.

Both the shell recipe and the `run:` of the GitHub Actions step are taken from README.md as
written and run with `bash -e` (GitHub Actions' default for `run:` steps) in a real git repo
made from examples/model-repo, with `origin/main` as the base and a PR commit on top; `agent`
is `python -m agent` from this checkout. The step must pass when the PR changes a model
(`agent diff` exits 1), pass when it changes nothing (exit 0), and fail on an invalid commit
(exit 2).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"
GIT = ["git", "-c", "user.name=Model Ops Test", "-c", "user.email=test@modelops.invalid",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
MODEL = "model-repo/teams/fraud/models/fraud-scorer.yaml"


def section() -> str:
    """README's "PR-driven model promotion" section, up to the next heading outside a code block."""
    lines = (ROOT / "README.md").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("### PR-driven model promotion"))
    fenced = False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,3} ", lines[i]):
            return "".join(lines[start:i])
    return "".join(lines[start:])


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", section(), re.M | re.S)


def shell_recipe() -> str:
    """The PR check of the ```sh block: its first paragraph ("in CI, on the PR ...")."""
    blocks = code_blocks("sh")
    assert blocks, "no ```sh block in the PR-driven model promotion section"
    first = blocks[0].split("\n\n")[0]
    assert "agent diff" in first and "--base" in first, first
    return first + "\n"


def workflow() -> dict[str, Any]:
    blocks = code_blocks("yaml")
    assert blocks, "no ```yaml workflow in the PR-driven model promotion section"
    doc = yaml.safe_load(blocks[0])
    assert isinstance(doc, dict)
    return doc


def workflow_step(step_id: str) -> dict[str, Any]:
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if step.get("id") == step_id:
                return dict(step)
    raise AssertionError(f"no step with id {step_id!r} in the README's workflow")


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def ci(tmp_path: Path) -> dict[str, Any]:
    """A checkout as CI has it: model-repo/ at origin/main, then a PR commit changing a model."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copytree(EXAMPLE, repo / "model-repo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "model repo")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    model = repo / MODEL
    text = model.read_text()
    assert "    traffic: 10" in text
    model.write_text(text.replace("    traffic: 10", "    traffic: 25", 1))
    git(repo, "commit", "-qam", "fraud-scorer: canary at 25%")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "agent"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agent "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GITHUB_OUTPUT")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               AGENT_CACHE_DIR=str(tmp_path / "render-cache"))
    return {"repo": repo, "env": env, "tmp": tmp_path}


def run_step(ci: dict[str, Any], script: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = ci["tmp"] / "step.sh"
    path.write_text(script)
    env = {**ci["env"], **(extra_env or {})}
    return subprocess.run(["bash", "-e", str(path)], cwd=ci["repo"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def break_the_model(repo: Path) -> None:
    model = repo / MODEL
    model.write_text(model.read_text().replace("    traffic: 25", "    traffic: 250", 1))
    git(repo, "commit", "-qam", "fraud-scorer: an invalid traffic share")


def test_shell_recipe_passes_with_changes_and_fails_on_an_invalid_commit(ci: dict[str, Any]) -> None:
    recipe = shell_recipe()
    proc = run_step(ci, recipe)
    assert proc.returncode == 0, f"the recipe fails under bash -e with changes:\n{recipe}\n{proc.stderr}"
    plan = (ci["repo"] / "plan.md").read_text()
    assert "fraud-scorer" in plan and "10% -&gt; 25%" in plan, plan

    git(ci["repo"], "update-ref", "refs/remotes/origin/main", "HEAD")   # nothing to change
    proc = run_step(ci, recipe)
    assert proc.returncode == 0, proc.stderr

    break_the_model(ci["repo"])
    proc = run_step(ci, recipe)
    assert proc.returncode != 0, "the recipe passed an invalid commit"
    assert "fraud-scorer.yaml:" in proc.stderr, proc.stderr


def test_github_actions_step(ci: dict[str, Any]) -> None:
    checkout = next(s for job in workflow()["jobs"].values() for s in job["steps"]
                    if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout.get("with", {}).get("fetch-depth") == 0, "the checkout must fetch the base branch"

    step = workflow_step("plan")
    script = step["run"]
    assert "${{" not in script, "a ${{ }} expression interpolated into the script: pass it through env"
    step_env = {k: str(v) for k, v in step.get("env", {}).items()}
    assert step_env.get("BASE") == "${{ github.base_ref }}"
    output = ci["tmp"] / "github_output"

    def run() -> subprocess.CompletedProcess[str]:
        output.write_text("")
        return run_step(ci, script, {"BASE": "main", "GITHUB_OUTPUT": str(output)})

    proc = run()
    assert proc.returncode == 0, f"the step fails under bash -e with changes:\n{script}\n{proc.stderr}"
    assert output.read_text().split() == ["changes=true"]
    assert "fraud-scorer" in (ci["repo"] / "plan.md").read_text()

    git(ci["repo"], "update-ref", "refs/remotes/origin/main", "HEAD")
    proc = run()
    assert proc.returncode == 0, proc.stderr
    assert output.read_text().split() == ["changes=false"]

    break_the_model(ci["repo"])
    proc = run()
    assert proc.returncode != 0, "the step passed an invalid commit"
    assert "fraud-scorer.yaml:" in proc.stderr, proc.stderr


def test_without_the_base_branch_the_diff_names_it(ci: dict[str, Any]) -> None:
    """What the README says a shallow checkout (no origin/main) fails with."""
    git(ci["repo"], "update-ref", "-d", "refs/remotes/origin/main")
    proc = run_step(ci, shell_recipe())
    assert proc.returncode != 0
    assert "unknown revision 'origin/main'" in proc.stderr, proc.stderr
    assert "unknown revision 'origin/main'" in section()
