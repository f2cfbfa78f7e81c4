"""`-o text|json|yaml` the same on every command that prints data: the flag (read from each
command's --help), and JSON and YAML that parse to the same document, for each command that
runs without a cluster (status, apply, diff and rollout status against a cluster:
tests/integration/test_output_formats.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"

# Every command that prints data, and the formats beyond text, json and yaml it also knows.
DATA_COMMANDS: dict[tuple[str, ...], set[str]] = {
    ("validate",): set(),
    ("render",): set(),
    ("diff",): {"markdown"},
    ("apply",): set(),
    ("status",): set(),
    ("rollout", "status"): set(),
    ("registry", "sync"): set(),
    ("promote",): set(),
    ("audit", "verify"): set(),
    ("version",): set(),
}
OUTPUT = re.compile(r"-o \{([a-z,]+)\}, --output \{\1\}")


def help_of(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main([*path, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("path", list(DATA_COMMANDS), ids=" ".join)
def test_each_data_command_takes_o_text_json_yaml(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    match = OUTPUT.search(help_of(path, capsys))
    assert match, f"agent {' '.join(path)} has no -o/--output"
    assert set(match.group(1).split(",")) == {"text", "json", "yaml"} | DATA_COMMANDS[path]


def test_every_command_with_o_takes_text_json_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    """Any command with -o (a new one too) takes the same formats, with the same flag."""
    with_o = {path: help_of(path, capsys) for path, parser, _ in cli.command_tree(cli.build_parser())
              if any("--output" in a.option_strings for a in parser._actions)}
    assert set(DATA_COMMANDS) <= set(with_o)
    for path, text in with_o.items():
        match = OUTPUT.search(text)
        assert match and {"text", "json", "yaml"} <= set(match.group(1).split(",")), path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out


def both(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """The command's exit code and its document, the same from -o json and -o yaml."""
    code, as_json = run(capsys, *argv, "-o", "json")
    again, as_yaml = run(capsys, *argv, "-o", "yaml")
    assert code == again
    doc = json.loads(as_json)
    assert yaml.safe_load(as_yaml) == doc
    return code, doc


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The example model repo as a git repo: its files, then a commit raising the canary to 25%."""
    repo = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "example")
    model = repo / "teams" / "fraud" / "models" / "fraud-scorer.yaml"
    model.write_text(re.sub(r"traffic: 10\b", "traffic: 25", model.read_text(), count=1))
    git(repo, "commit", "-qam", "canary to 25%")
    return repo


def test_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = both(capsys, "validate", str(EXAMPLE))
    assert code == 0 and doc["valid"] is True and doc["counts"]["models"] == 5


def test_render_yaml_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, as_yaml = run(capsys, "render", str(EXAMPLE))
    assert code == 0
    assert run(capsys, "render", str(EXAMPLE), "-o", "text") == (0, as_yaml)  # text: the manifests, as YAML
    assert run(capsys, "render", str(EXAMPLE), "-o", "yaml") == (0, as_yaml)
    code, as_json = run(capsys, "render", str(EXAMPLE), "-o", "json")
    listed = json.loads(as_json)
    assert listed["kind"] == "List" and listed["items"] == list(yaml.safe_load_all(as_yaml))


def test_diff_between_revisions(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = both(capsys, "diff", str(repo), "--base", "HEAD~1")
    assert code == 1
    assert doc["changed"] is True
    assert {o["model"] for o in doc["objects"] if o["action"] != "unchanged"} == {"fraud/fraud-scorer"}
    code, markdown = run(capsys, "diff", str(repo), "--base", "HEAD~1", "-o", "markdown")
    assert code == 1 and "fraud-scorer" in markdown


def test_promote_dry_run(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = both(capsys, "promote", "fraud-scorer", str(repo), "--traffic", "50", "--dry-run")
    assert code == 0
    assert doc["changed"] is True and doc["dryRun"] is True and doc["commit"] is None
    assert "+    traffic: 50" in doc["diff"] and doc["message"].startswith("promote fraud/fraud-scorer: ")
    assert doc["plan"]["models"]
    assert git(repo, "status", "--porcelain") == ""  # a dry run writes nothing


def test_promote_commit(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "promote", "fraud-scorer", str(repo), "--traffic", "50", "--commit", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["commit"] == git(repo, "rev-parse", "HEAD") and doc["push"] is None


def test_registry_sync_with_nothing_to_follow(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = both(capsys, "registry", "sync", str(repo), "--alias", "champion", "--dry-run")
    assert code == 0 and doc == {"alias": "champion", "proposals": []}


def test_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "tester") as log:
        log.write("reconcile", commit="abc")
        log.write("reconcile", commit="def")
    code, doc = both(capsys, "audit", "verify", str(path))
    assert code == 0 and doc["ok"] is True and doc["records"] == 2 and doc["anchor"] is None
    path.write_text(path.read_text().replace('"def"', '"xyz"'))
    code, doc = both(capsys, "audit", "verify", str(path))
    assert code == 1 and doc["ok"] is False and doc["firstBadLine"] == 2


def test_audit_verify_errors_are_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "verify", str(tmp_path / "missing.jsonl"), "-o", "json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: cannot read the audit log {tmp_path / 'missing.jsonl'}: no such file or directory\n"
    assert cli.main(["audit", "verify", str(tmp_path / "missing.jsonl"), "--anchor", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --anchor x: expected SEQ:HASH")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = both(capsys, "version")
    assert code == 0 and set(doc) == {"version", "testedWith"}

