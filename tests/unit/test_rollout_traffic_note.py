"""Git's canary traffic under a canary rollout is the rollout's to decide: a number written in
Git (`agent promote --traffic 50`) is not applied while spec.rollout drives the canary, and every
place a user looks says so: the plan (text, JSON `models[].notes`, Markdown) of `agent diff`
offline and live, `agent promote`, `agent rollout status`/`agent status` (`notes`), and the
controller (a log line and an Event once per commit)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from agent import cli, output
from agent.engine import load_desired, offline_plan, read_rollouts, rollout_status, with_rollouts
from agent.plan import build_plan, change
from agent.rollout import RolloutState, traffic_note, traffic_notes
from agent.spec import Canary, Model
from tests.unit.test_promote_rollout import CANARY_BLOCK, MODEL, git, make_repo
from tests.unit.test_rollout_cli import KEY, FakeCluster, connected, isvc, state, write_repo
from tests.unit.test_rollout_hold import Seen
from tests.unit.test_rollout_machine import model

LIVE = ("traffic decided by the rollout (step 1/4, 10%); Git's 50% is not applied while spec.rollout drives the "
        "canary")


def with_traffic(m: Model, traffic: int) -> Model:
    assert m.canary is not None
    return replace(m, canary=Canary(m.canary.version, traffic))


def at(m: Model, step: int, traffic: int, phase: str = "Progressing") -> RolloutState:
    return RolloutState(model=m.key, version="13", stable="12", strategy="canary", phase=phase,  # type: ignore[arg-type]
                        step=step, traffic=traffic, step_started=1.0)


def git_traffic_repo(root: Path, traffic: int) -> Path:
    """test_rollout_cli's repo (steps 10, 50, 100) with `traffic` written in Git's canary."""
    write_repo(root)
    path = root / "scorer.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["canary"]["traffic"] = traffic
    path.write_text(yaml.safe_dump(doc))
    assert load_desired(root, cached=False).spec.models[0].canary == Canary("2", traffic)
    return root


# --- the pure note ----------------------------------------------------------------------------------

def test_git_traffic_the_rollout_does_not_apply_is_noted() -> None:
    m = with_traffic(model(), 50)
    assert traffic_note(m, at(m, 0, 10)) == LIVE
    assert traffic_note(m, at(m, 0, 10, "Paused")) == LIVE.replace("10%)", "10%, paused)")
    assert traffic_note(m, at(m, 0, 0, "RolledBack")) == LIVE.replace("step 1/4, 10%", "rolled back, 0%")
    assert traffic_note(m, None) == LIVE.replace("step 1/4, 10%", "it starts at step 1/4, 10%")


@pytest.mark.parametrize(("traffic", "step", "live"), [
    (10, 1, 25),  # Git's number is the first step: where every rollout starts (or the loader's default)
    (50, 2, 50),  # what serves now
])
def test_no_note_when_git_says_what_serves_or_where_it_starts(traffic: int, step: int, live: int) -> None:
    m = with_traffic(model(), traffic)
    assert traffic_note(m, at(m, step, live)) is None


def test_no_note_without_a_canary_rollout() -> None:
    assert traffic_note(with_traffic(model(rollout=False), 50), None) is None
    assert traffic_note(with_traffic(model(strategy="blueGreen"), 50), None) is None


def test_offline_notes_follow_a_changed_canary() -> None:
    before, after = model(), with_traffic(model(), 50)
    old, new = SimpleNamespace(models=(before,)), SimpleNamespace(models=(after,))
    notes = traffic_notes(old, new)  # type: ignore[arg-type]
    assert notes == {"ml/fraud": ["traffic decided by spec.rollout (steps 10, 25, 50, 100); Git's 50% is not "
                                  "applied while spec.rollout drives the canary"]}
    assert traffic_notes(new, new) == {}  # type: ignore[arg-type]  # the change is not about the canary


# --- where the user looks: the plan ------------------------------------------------------------------

def noted_plan() -> Any:
    obj = isvc(10)
    return build_plan([change("unchanged", obj, obj)], {"short": "live"}, {"short": "abc"},
                      notes={KEY: [LIVE], "other/model": ["not in this plan"]})


def test_the_plan_says_it_in_text_json_and_markdown() -> None:
    plan = noted_plan()
    assert plan.notes == {KEY: [LIVE]}
    models = output.text(plan).split("Models\n", 1)[1].split("\n\n", 1)[0]
    assert f"  {KEY}: note: {LIVE}" in models
    assert output.as_dict(plan)["models"][0]["notes"] == [LIVE]
    md = output.markdown(plan)
    assert f"- **note** `{KEY}`: {LIVE}" in md.splitlines()
    plain = build_plan([change("unchanged", isvc(10), isvc(10))])
    assert "notes" not in output.as_dict(plain)["models"][0]  # plans without notes keep their shape


def test_a_live_plan_notes_it(tmp_path: Path) -> None:
    desired = load_desired(git_traffic_repo(tmp_path / "repo", 50), cached=False)
    found = read_rollouts(FakeCluster([state(step=0, traffic=10)]), desired)  # type: ignore[arg-type]
    expected = ("traffic decided by the rollout (step 1/3, 10%); Git's 50% is not applied while spec.rollout drives "
                "the canary")
    assert found.traffic == {KEY: 10} and found.traffic_notes == {KEY: expected}
    plan = with_rollouts(build_plan([change("unchanged", isvc(10), isvc(10))]), found)
    assert plan.notes == {KEY: [expected]}
    assert rollout_status(found.states[KEY], desired, KEY, time.time())["notes"] == [expected]


def test_agent_rollout_status_prints_the_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = git_traffic_repo(tmp_path / "repo", 50)
    connected(monkeypatch, FakeCluster([state(step=0, traffic=10)]))
    assert cli.main(["rollout", "status", str(root)]) == 0
    assert "  note: traffic decided by the rollout (step 1/3, 10%); Git's 50% is not applied" in capsys.readouterr().out


def test_offline_diff_and_promote_say_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path, CANARY_BLOCK)
    assert cli.main(["promote", "fraud-scorer", str(repo), "--traffic", "50", "--commit"]) == 0
    out = capsys.readouterr().out
    note = ("fraud/fraud-scorer: note: traffic decided by spec.rollout (steps 10, 50, 100); Git's 50% is not applied "
            "while spec.rollout drives the canary")
    assert "canary 10% -> 50%" in out and note in out
    plan = offline_plan(repo, "HEAD~1", "HEAD")
    assert plan.notes["fraud/fraud-scorer"] == [note.split(": note: ", 1)[1]]
    assert cli.main(["diff", str(repo), "--base", "HEAD~1", "--revision", "HEAD", "-o", "json"]) == 1
    [scorer] = [m for m in json.loads(capsys.readouterr().out)["models"] if m["name"] == "fraud-scorer"]
    assert scorer["notes"] == plan.notes["fraud/fraud-scorer"]
    assert git(repo, "status", "--porcelain") == ""
    # without a rollout Git's number is the traffic: nothing to note
    plain = make_repo(tmp_path / "plain", None)
    assert cli.main(["promote", "fraud-scorer", str(plain), "--traffic", "50", "--dry-run"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert (plain / MODEL).exists()


# --- the controller ---------------------------------------------------------------------------------

def test_the_controller_says_it_once_per_commit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    desired = load_desired(git_traffic_repo(tmp_path / "repo", 50), cached=False)
    cluster = FakeCluster([state(step=0, traffic=10)])
    seen = Seen()
    driver = seen.driver(cluster)
    with caplog.at_level(logging.WARNING, logger="agent.controller.rollouts"):
        for _ in range(3):
            assert driver.tick(desired) == {KEY: 10}  # the step's traffic stays
        second = replace(desired, revision=replace(desired.revision, commit="c" * 40))
        driver.tick(second)
        driver.tick(second)
    events = [(m, w) for r, m, w in seen.events if r == "RolloutIgnoresGitTraffic"]
    assert [w for _m, w in events] == [True, True]
    assert events[0][0] == ("the working copy: traffic decided by the rollout (step 1/3, 10%); Git's 50% is not "
                            "applied while spec.rollout drives the canary")
    assert events[1][0].startswith("commit cccccccccccc: traffic decided by the rollout")
    assert sum("Git's 50% is not applied" in r.getMessage() for r in caplog.records) == 2
