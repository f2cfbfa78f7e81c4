"""`-o text|json|yaml` on the commands that read the cluster (diff, apply, status, rollout
status, audit verify --target): JSON and YAML parse, and are the same document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from tests.integration._repos import make_repo

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out


def both(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, as_json = run(capsys, *argv, "-o", "json")
    again, as_yaml = run(capsys, *argv, "-o", "yaml")
    assert code == again, (code, again)
    doc = json.loads(as_json)
    assert steady(yaml.safe_load(as_yaml)) == steady(doc)
    return code, doc


def steady(doc: Any) -> Any:
    """The document without the ages that grow between two runs (ageSeconds, sinceSeconds, ...)."""
    if isinstance(doc, dict):
        return {k: steady(v) for k, v in doc.items() if not k.lower().endswith("seconds")}
    if isinstance(doc, list):
        return [steady(v) for v in doc]
    return doc


def test_cluster_commands_write_json_and_yaml(kubeconfig: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo", "outfmt", "outfmt", 3)
    audit = tmp_path / "audit.jsonl"
    k = ["--kubeconfig", str(kubeconfig)]

    code, plan = both(capsys, "diff", str(repo), *k)
    assert code == 1 and plan["kind"] == "Plan" and plan["changed"] is True

    code, out = run(capsys, "apply", str(repo), *k, "--audit-log", str(audit), "-o", "yaml")
    applied = yaml.safe_load(out)
    assert code == 0, out
    assert set(applied) == {"plan", "results", "requests", "status"}
    assert applied["results"] and all(r["outcome"] == "applied" for r in applied["results"])
    assert applied["plan"]["changed"] is True and applied["requests"]

    code, plan = both(capsys, "diff", str(repo), *k)
    assert code == 0 and plan["changed"] is False

    code, status = both(capsys, "status", str(repo), *k, "--allow-unknown")
    assert len(status["models"]) == 3 and all(m["synced"] for m in status["models"])

    code, rollouts = both(capsys, "rollout", "status", str(repo), *k)
    assert code == 0 and rollouts == {"target": "outfmt", "rollouts": []}

    code, verdict = both(capsys, "audit", "verify", str(audit), "--target", "outfmt", *k)
    assert code == 0 and verdict["ok"] is True and 0 < verdict["anchor"]["seq"] <= verdict["records"]
