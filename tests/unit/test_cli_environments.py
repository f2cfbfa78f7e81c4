"""The CLI across environments, offline: `agent environments`, render and diff --base per
environment, and the errors of --env/--cluster (no cluster is contacted: a cluster that cannot
be reached is a kubeconfig context pointing at a closed port)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from tests.unit.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "environments"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture
def fleet_repo(tmp_path: Path) -> Path:
    """The environments example in a git repo of its own, one commit."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_environments_lists_them_in_promotion_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "environments", str(EXAMPLE), "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert [(e["name"], e["clusters"], e["promotesFrom"]) for e in doc] == [
        ("staging", ["staging"], None), ("production", ["prod-eu", "prod-us"], "staging")]
    assert doc[1]["target"] == "ml-fleet-production" and doc[1]["soak"] == "24h"
    code, out, _ = _run(capsys, "environments", str(EXAMPLE), "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == doc
    code, out, _ = _run(capsys, "environments", str(EXAMPLE))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[0] == "ENVIRONMENT"
    assert lines[1].split()[0] == "staging" and lines[2].split()[:3] == ["production", "prod-eu,", "prod-us"]


def test_environments_of_a_repo_without_any(capsys: pytest.CaptureFixture[str]) -> None:
    repo = REPO_ROOT / "examples" / "model-repo"
    code, out, _ = _run(capsys, "environments", str(repo), "-o", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = _run(capsys, "environments", str(repo))
    assert code == 0 and "declares no environments" in out


def test_render_every_environment_or_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "render", str(EXAMPLE))
    assert code == 0 and "rendering every environment (staging, production)" in err
    assert out.startswith("# environment staging (target ml-fleet-staging)\n")
    assert "# environment production (target ml-fleet-production)\n" in out
    targets = {d["metadata"]["labels"]["modelops.dev/target"] for d in yaml.safe_load_all(out)
               if d and d["kind"] == "InferenceService"}
    assert targets == {"ml-fleet-staging", "ml-fleet-production"}

    code, out, err = _run(capsys, "render", str(EXAMPLE), "--env", "production", "-o", "json")
    assert code == 0 and not err
    items = json.loads(out)["items"]
    scorer = next(o for o in items if o["kind"] == "InferenceService" and o["metadata"]["name"] == "fraud-scorer")
    assert scorer["metadata"]["labels"]["modelops.dev/target"] == "ml-fleet-production"
    assert scorer["metadata"]["annotations"]["modelops.dev/stable-version"] == "12"

    code, out, _ = _run(capsys, "render", str(EXAMPLE), "--cluster", "prod-us", "-o", "json")
    assert code == 0 and json.loads(out)["items"] == items  # the cluster's environment


@pytest.mark.parametrize(("argv", "message"), [
    (["render", "--env", "qa"], "environment 'qa' is not declared in the repo (environments: production, staging)"),
    (["render", "--cluster", "prod-ap"], "cluster 'prod-ap' is in no environment of the repo"),
    (["render", "--env", "staging", "--cluster", "prod-us"],
     "cluster 'prod-us' is not in environment 'staging' (its clusters: staging)"),
    (["diff"], "the repo declares environments (staging, production): agent diff needs --env NAME or --cluster NAME"),
    (["apply"], "agent apply needs --env NAME or --cluster NAME"),
    (["diff", "--base", "HEAD", "--cluster", "prod-eu"], "an offline diff is per environment (--env NAME)"),
    (["apply", "--env", "production", "--context", "prod-eu"], "--context on a repo with environments"),
    (["status", "--context", "prod-eu"], "select them with --env NAME or --cluster NAME"),
])
def test_errors_of_env_and_cluster(fleet_repo: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                   message: str) -> None:
    code, out, err = _run(capsys, argv[0], str(fleet_repo), *argv[1:])
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_env_on_a_repo_without_environments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "single"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("environments"))
    code, _, err = _run(capsys, "render", str(root), "--env", "staging")
    assert code == 2 and "--env: the repo declares no environments (no kind: Environment)" in err
    code, _, err = _run(capsys, "status", str(root), "--cluster", "staging")
    assert code == 2 and "--cluster: the repo declares no environments" in err


def test_diff_base_grouped_by_environment(fleet_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    production = fleet_repo / "environments" / "production.yaml"
    production.write_text(production.read_text().replace('stable: "12"', 'stable: "13"'))
    code, out, _ = _run(capsys, "diff", str(fleet_repo), "--base", "main", "-o", "markdown")
    assert code == 1
    assert out.count("### Model changes") == 1
    staging, prod = out.index("#### Environment `staging`"), out.index("#### Environment `production`")
    assert staging < prod
    assert "No changes." in out[staging:prod]
    assert "| `fraud/fraud-scorer` | updated | version 12 -&gt; 13" in out[prod:]

    code, out, _ = _run(capsys, "diff", str(fleet_repo), "--base", "main", "-o", "json")
    doc: dict[str, Any] = json.loads(out)
    assert code == 1
    assert [(e["name"], e["plan"]["changed"]) for e in doc["environments"]] == [("staging", False),
                                                                                ("production", True)]
    code, out, _ = _run(capsys, "diff", str(fleet_repo), "--base", "main")
    assert code == 1 and "== staging ==\nno changes\n== production ==" in out
    code, out, _ = _run(capsys, "diff", str(fleet_repo), "--base", "main", "--env", "staging", "-o", "json")
    assert code == 0 and [e["name"] for e in json.loads(out)["environments"]] == ["staging"]


def test_unreachable_clusters_are_reported_and_the_others_tried(fleet_repo: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "staging",
        "clusters": [{"name": "closed", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": n, "context": {"cluster": "closed", "user": "u"}} for n in ("staging", "prod-eu")],
    }))
    code, out, err = _run(capsys, "status", str(fleet_repo), "--kubeconfig", str(kubeconfig), "--retry-budget", "1", "-o", "json")
    assert code == 1
    clusters = [c for e in json.loads(out)["environments"] for c in e["clusters"]]
    assert [(c["name"], c["reachable"]) for c in clusters] == [("staging", False), ("prod-eu", False),
                                                               ("prod-us", False)]
    assert "cannot reach the API server" in clusters[0]["error"]
    assert clusters[2]["error"] == ("cluster 'prod-us' is not a context of the kubeconfig (--kubeconfig "
                                    f"{kubeconfig}; contexts: staging, prod-eu)")
    code, out, _ = _run(capsys, "status", str(fleet_repo), "--kubeconfig", str(kubeconfig), "--retry-budget", "1")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["MODEL", "staging/staging", "production/prod-eu", "production/prod-us"]
    assert rows[1] == ["fraud/fraud-scorer", "unreachable", "unreachable", "unreachable"]
    code, out, err = _run(capsys, "apply", str(fleet_repo), "--env", "production", "--kubeconfig", str(kubeconfig), "--retry-budget", "1",
                          "-o", "json")
    assert code == 2
    assert [(c["cluster"], c["ok"]) for c in json.loads(out)["clusters"]] == [("prod-eu", False), ("prod-us", False)]
    assert "not-a-secret" not in out + err


def test_validate_counts_every_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "validate", str(EXAMPLE))
    assert code == 0 and "1 manifests, 2 environments -> 12 objects" in out
    code, out, _ = _run(capsys, "validate", str(EXAMPLE), "-o", "json")
    assert code == 0 and json.loads(out)["counts"]["environments"] == 2
