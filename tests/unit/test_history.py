"""`agent history`: deployments read from audit records as the agent writes them (reconcile with
the changed models' versions, object records of older logs, rollout transitions, overrides,
outcomes), newest first; the reader leaves a torn last line out. In memory and tmp files only."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from agent import cli
from agent.audit import AuditLog, read_records
from agent.history import deployments, public, table

AGENT = "modelops-agent@host/1"


def reconcile(time: str, commit: str, models: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    record = {"event": "reconcile", "time": time, "agent": AGENT, "target": "ml", "commit": commit,
              "author": "Alice <alice@example.com>", "message": "scorer 2 as a canary\n\nbody", "dry_run": False,
              "result": "succeeded", **extra}
    if models is not None:
        record["models"] = models
    return record


def obj(time: str, model: str, dry_run: bool = False) -> dict[str, Any]:
    return {"event": "object", "time": time, "agent": AGENT, "model": model, "action": "update", "result": "applied",
            "dry_run": dry_run}


def transition(time: str, kind: str, reason: str, traffic: int | None, step: int = 0) -> dict[str, Any]:
    return {"event": "rollout", "time": time, "agent": AGENT, "model": "fraud/scorer", "transition": kind,
            "reason": reason, "traffic": traffic, "step": step, "version": "2"}


STORY = [
    obj("t01", "fraud/scorer"),
    reconcile("t01", "a" * 40, [{"model": "fraud/scorer", "stable": "1", "canary": None, "traffic": None}]),
    obj("t02", "fraud/scorer"),
    reconcile("t02", "b" * 40, [{"model": "fraud/scorer", "stable": "1", "canary": "2", "traffic": 10}],
              pull_request="#12"),
    transition("t03", "started", "canary 2 at step 1/3", 10),
    transition("t04", "advanced", "healthy for 1m at step 1/3: 10% -> 50%", 50, 1),
    obj("t04", "fraud/scorer"),
    reconcile("t04", "b" * 40, [{"model": "fraud/scorer", "stable": "1", "canary": "2", "traffic": 50}]),
    transition("t05", "rolled-back", "rolled back at step 2/3: error-rate 0.2 > 0.05", 0, 1),
    {"event": "rollout-outcome", "time": "t06", "agent": AGENT, "model": "fraud/scorer", "version": "2",
     "outcome": "rolled-back", "pushed": "c" * 40, "pull_request": "https://forge/pulls/13"},
    obj("t07", "recsys/ranker"),
    reconcile("t07", "d" * 40, [{"model": "recsys/ranker", "stable": "5", "canary": None, "traffic": None}]),
]


def test_each_commit_is_a_deployment_newest_first_with_what_its_rollout_did() -> None:
    found = deployments(STORY, name="scorer")
    assert [(e["commit"][:1], e["time"]) for e in found] == [("b", "t02"), ("a", "t01")]
    canary = found[0]
    assert (canary["stable"], canary["canary"], canary["traffic"]) == ("1", "2", 0)  # the rollback's traffic
    assert canary["pullRequest"] == "#12" and canary["author"] == "Alice <alice@example.com>"
    assert canary["message"] == "scorer 2 as a canary" and canary["applies"] == 2 and canary["lastTime"] == "t04"
    assert canary["rollout"]["outcome"] == "rolled back"
    assert "error-rate 0.2 > 0.05" in canary["rollout"]["detail"]
    assert [ev["text"] for ev in canary["events"]][-1] == "revert proposed in https://forge/pulls/13"
    assert found[1]["rollout"] is None and found[1]["canary"] is None
    assert "_same" not in public(found)[0]


def test_the_text_view_has_a_line_per_deployment_and_its_rollout_below() -> None:
    lines = table(deployments(STORY))
    assert lines[0].split() == ["TIME", "MODEL", "COMMIT", "AUTHOR", "PR", "VERSIONS", "RESULT", "ROLLOUT"]
    assert lines[1].split()[:2] == ["t07", "recsys/ranker"]
    scorer = next(line for line in lines if "b" * 12 in line)
    assert "1, canary 2 at 0%" in scorer and "#12" in scorer and "Alice" in scorer and "<alice" not in scorer
    assert scorer.endswith("  rolled back at step 2/3: error-rate 0.2 > 0.05")
    assert any(line.strip().startswith("t04  advanced: healthy for 1m") for line in lines)


def test_older_logs_name_the_changed_models_in_object_records_and_dry_runs_are_no_deployment() -> None:
    records = [obj("t1", "fraud/scorer"), reconcile("t1", "a" * 40),
               obj("t2", "fraud/scorer", dry_run=True), reconcile("t2", "e" * 40, dry_run=True),
               obj("t3", "fraud/other"), reconcile("t3", "f" * 40)]
    found = deployments(records, name="scorer")
    assert [e["commit"][:1] for e in found] == ["a"]
    assert found[0]["stable"] is None  # not recorded then: shown as unknown
    assert deployments(records, namespace="fraud", name=None)[0]["model"] == "fraud/other"


def test_another_target_and_a_registry_move_and_a_human_override() -> None:
    records = [obj("t1", "fraud/scorer"),
               reconcile("t1", "a" * 40, [{"model": "fraud/scorer", "stable": "champion", "canary": None}],
                         resolved=[{"model": "fraud/scorer", "version": "champion", "registry_version": "12"}]),
               {"event": "registry-moved", "time": "t2", "agent": AGENT,
                "moved": ["fraud/scorer champion: mlflow scorer@champion 12 -> 13 (s3://m/13)"]},
               obj("t2", "fraud/scorer"),
               reconcile("t2", "a" * 40, [{"model": "fraud/scorer", "stable": "champion", "canary": None}],
                         resolved=[{"model": "fraud/scorer", "version": "champion", "registry_version": "13"}]),
               {"event": "rollout-override", "time": "t3", "agent": "cli", "model": "fraud/scorer", "action": "abort",
                "who": "bob", "reason": "pager", "traffic": {"from": 50, "to": 0}},
               obj("t4", "fraud/scorer"), reconcile("t4", "b" * 40, target="other")]
    found = deployments(records, target="ml")
    assert [e["registry"][0]["registryVersion"] for e in found] == ["13", "12"]  # a move is a new deployment
    assert found[1]["events"][0]["text"].startswith("fraud/scorer champion: mlflow scorer@champion 12 -> 13")
    assert found[0]["rollout"]["outcome"] == "aborted" and found[0]["traffic"] == 0
    assert found[0]["events"][-1]["text"] == "aborted by bob: pager"


def test_the_reader_leaves_a_torn_last_line_out_and_reports_a_broken_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, AGENT) as log:
        log.write("reconcile", commit="a" * 40, models=[{"model": "fraud/scorer", "stable": "1"}], result="succeeded")
        log.write("reconcile", commit="b" * 40, models=[{"model": "fraud/scorer", "stable": "2"}], result="succeeded")
    with path.open("ab") as f:
        f.write(b'{"event": "reconcile", "commit": "cccc')  # a writer killed mid-line
    skipped: list[int] = []
    assert [r["commit"][:1] for r in read_records(path, skipped=skipped.append)] == ["a", "b"]
    assert skipped == []
    broken = io.BytesIO(b'{"event":"x"}\nnot json\n[1]\n{"event":"y"}\n')
    assert [r["event"] for r in read_records(broken, skipped=skipped.append)] == ["x", "y"]
    assert skipped == [2, 3]


def test_the_command(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("AGENT_AUDIT_LOG", raising=False)
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in STORY))
    assert cli.main(["history", "scorer", str(tmp_path), "--audit-log", str(path), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] is None  # tmp_path is no model repo: every target's records
    assert [d["commit"][:1] for d in doc["deployments"]] == ["b", "a"]
    assert cli.main(["history", "nosuch", str(tmp_path), "--audit-log", str(path)]) == 2
    assert "no deployment of a model nosuch" in capsys.readouterr().err
    assert cli.main(["history", str(tmp_path)]) == 2  # no log named
    assert "--audit-log FILE (or AGENT_AUDIT_LOG)" in capsys.readouterr().err
    assert cli.main(["history", "--audit-log", str(tmp_path / "missing.jsonl"), str(tmp_path)]) == 2
    assert "cannot read the audit log" in capsys.readouterr().err
