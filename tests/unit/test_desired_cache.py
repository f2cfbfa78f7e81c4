"""The per-tree cache of rendered desired state: hit on the same tree, miss on another, and
never a stale result across a change of content."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.desired import _cache as _desired_cache
from agent.engine import load_desired

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def test_rendered_tree_is_reused_and_keyed_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "teams/fraud/infra/s3-model-artifacts.enc.yaml").unlink()  # SOPS: never cached (test_sops.py)
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "one"], cwd=repo, check=True)

    first = load_desired(repo, "HEAD")
    entries = list((tmp_path / "cache" / "desired").glob("*.pickle"))
    assert len(entries) == 1

    calls: list[str] = []
    real = _desired_cache.get

    def spy(tree_id: str) -> object:
        hit = real(tree_id)
        calls.append("hit" if hit is not None else "miss")
        return hit

    monkeypatch.setattr(_desired_cache, "get", spy)
    again = load_desired(repo, "HEAD")
    assert calls == ["hit"]
    assert again.objects == first.objects and again.spec == first.spec
    assert again.revision.commit == first.revision.commit

    # a new commit with other content is a different tree: rendered afresh, never stale
    model = repo / "teams/fraud/models/fraud-scorer.yaml"
    model.write_text(model.read_text().replace("traffic: 10", "traffic: 30", 1))
    subprocess.run([*GIT, "commit", "-qam", "two"], cwd=repo, check=True)
    changed = load_desired(repo, "HEAD")
    assert calls == ["hit", "miss"]
    isvc = next(o for o in changed.objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "fraud-scorer")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 30

    # a corrupt entry is ignored, not trusted
    for entry in (tmp_path / "cache" / "desired").glob("*.pickle"):
        entry.write_bytes(b"garbage")
    assert load_desired(repo, "HEAD").objects == changed.objects
