"""Rollouts seen and steered from the CLI (#11), without a cluster: the rollout notes of a plan
in text/JSON/Markdown, which stored states set the live traffic a plan is made against, and
`agent rollout status|abort|promote` against an in-memory ConfigMap."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli, output
from agent.cluster import Cluster, ClusterError, KindInfo
from agent.engine import Desired, load_desired, read_rollouts
from agent.plan import RolloutNote, build_plan, change
from agent.rollout import RolloutState

API = "modelops.dev/v1alpha1"
KEY = "team/scorer"
NOTE = RolloutNote(phase="Progressing", step=2, steps=3, traffic=50, version="2",
                   message="rollout in progress, step 2/3 (50%), 1m of 5m healthy")


def isvc(traffic: int) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "scorer", "namespace": "team", "labels": {"modelops.dev/model": "scorer"}},
            "spec": {"predictor": {"canaryTrafficPercent": traffic}}}


def plan_with(note: RolloutNote | None, *, changed: bool = False) -> Any:
    obj = isvc(50)
    item = change("update", isvc(10), obj) if changed else change("unchanged", obj, obj)
    return build_plan([item], {"short": "live"}, {"short": "abc"}, {KEY: note} if note else None)


# --- the plan's rollout notes --------------------------------------------------------------

def test_text_shows_the_note_under_models() -> None:
    text = output.text(plan_with(NOTE))
    models = text.split("Models\n", 1)[1].split("\n\n", 1)[0]
    assert "no model changes" in models
    assert f"  {KEY}: rollout in progress, step 2/3 (50%)" in models


def test_json_has_models_rollout_only_where_a_rollout_runs() -> None:
    doc = output.as_dict(plan_with(NOTE))
    assert doc["models"][0]["rollout"] == {"phase": "Progressing", "step": 2, "steps": 3, "traffic": 50,
                                           "version": "2", "message": NOTE.message}
    plain = output.as_dict(plan_with(None))
    assert "rollout" not in plain["models"][0]  # plans without rollouts keep their shape


def test_markdown_has_one_escaped_line() -> None:
    hostile = RolloutNote("Progressing", 1, 3, 10, "2", "step 1/3 <img src=x> | `x`")
    md = output.markdown(plan_with(hostile))
    line = next(ln for ln in md.splitlines() if "**rollout**" in ln)
    assert line.startswith(f"- **rollout** `{KEY}`: ")
    assert "<img" not in line and "&lt;img" in line and "&#124;" in line


def test_outputs_without_rollouts_are_unchanged() -> None:
    plan = plan_with(None, changed=True)
    assert "rollout" not in output.text(plan) and "**rollout**" not in output.markdown(plan)


def test_notes_follow_the_models_of_a_filtered_plan() -> None:
    plan = build_plan([change("unchanged", isvc(50), isvc(50))], rollouts={KEY: NOTE, "other/model": NOTE})
    assert list(plan.rollouts) == [KEY]


# --- which states set the live traffic --------------------------------------------------------

def write_repo(root: Path, *, rollout: bool = True, canary: str = "2") -> Path:
    spec: dict[str, Any] = {
        "format": "sklearn", "runtime": "sklearn-server", "backend": "kserve",
        "versions": [{"version": v, "uri": f"s3://models/scorer/{v}/"} for v in ("1", "2", "3")],
        "stable": "1", "canary": {"version": canary}, "replicas": 1,
    }
    if rollout:
        spec["rollout"] = {"strategy": "canary", "steps": [10, 50, 100], "interval": "5m"}
    else:
        spec["canary"]["traffic"] = 20
    docs = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": "team"},
                       "spec": {"policy": {"allowedNamespaces": ["team"]}}}],
        "runtimes.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                           "spec": {"image": "registry.example/sklearn:1", "formats": ["sklearn"], "port": 8080}}],
        "scorer.yaml": [{"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": "team"},
                         "spec": spec}],
    }
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in docs.items():
        (root / rel).write_text(yaml.safe_dump_all(content, sort_keys=False))
    return root


def state(phase: str = "Progressing", step: int = 1, traffic: int = 50, version: str = "2") -> RolloutState:
    return RolloutState(model=KEY, version=version, stable="1", strategy="canary", phase=phase,  # type: ignore[arg-type]
                        step=step, traffic=traffic, step_started=time.time() - 60)


class FakeCluster:
    """The rollout ConfigMap in memory, and the model's InferenceService (`live`, none by
    default); `error` makes every GET fail with that status."""

    def __init__(self, states: list[RolloutState] = (), error: int = 0,  # type: ignore[assignment]
                 live: dict[str, Any] | None = None) -> None:
        self.error = error
        self.gets = 0
        self.live = live
        self.cm: dict[str, Any] | None = None
        if states:
            self.cm = {"metadata": {"resourceVersion": "1"},
                       "data": {s.model.replace("/", "."): json.dumps(s.to_json()) for s in states}}

    def kind(self, api_version: str, kind: str) -> KindInfo:
        return KindInfo(api_version, kind, kind.lower() + "s", True)

    def get(self, info: Any, _name: str, _namespace: str | None = None) -> dict[str, Any] | None:
        self.gets += 1
        if self.error:
            raise ClusterError(self.error, "nope")
        return self.cm if info.kind == "ConfigMap" else self.live

    def _write(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(int((self.cm or {"metadata": {"resourceVersion": "0"}})
                                                      ["metadata"]["resourceVersion"]) + 1)
        self.cm = body
        return body

    def create(self, _info: Any, body: dict[str, Any], _ns: str, make_namespace: bool = False) -> dict[str, Any]:
        return self._write(body)

    def replace(self, _info: Any, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(body)

    def stored(self) -> RolloutState:
        assert self.cm is not None
        return RolloutState.from_json(json.loads(self.cm["data"]["team.scorer"]))


def desired(tmp_path: Path, **kw: Any) -> Desired:
    return load_desired(write_repo(tmp_path / "repo", **kw), cached=False)


def test_a_running_rollout_sets_the_live_traffic(tmp_path: Path) -> None:
    cluster = FakeCluster([state()])
    found = read_rollouts(cluster, desired(tmp_path))  # type: ignore[arg-type]
    assert cluster.gets == 1
    assert found.traffic == {KEY: 50}
    assert found.notes[KEY].step == 2 and found.notes[KEY].steps == 3
    assert "step 2/3 (50%)" in found.notes[KEY].message


def test_a_stale_state_is_noted_but_sets_no_traffic(tmp_path: Path) -> None:
    found = read_rollouts(FakeCluster([state(version="3")]), desired(tmp_path))  # type: ignore[arg-type]
    assert found.traffic == {}
    assert "stale: Git's canary is 2" in found.notes[KEY].message


def test_no_rollout_in_the_repo_costs_no_request(tmp_path: Path) -> None:
    cluster = FakeCluster([state()])
    found = read_rollouts(cluster, desired(tmp_path, rollout=False))  # type: ignore[arg-type]
    assert cluster.gets == 0 and found.traffic == {} and found.notes == {}


def test_forbidden_warns_and_missing_is_none(tmp_path: Path) -> None:
    forbidden = read_rollouts(FakeCluster(error=403), desired(tmp_path))  # type: ignore[arg-type]
    assert forbidden.traffic == {} and "cannot read the rollout states" in forbidden.warning
    assert read_rollouts(FakeCluster(), desired(tmp_path)).traffic == {}  # type: ignore[arg-type]
    with pytest.raises(ClusterError):
        read_rollouts(FakeCluster(error=500), desired(tmp_path))  # type: ignore[arg-type]


# --- agent rollout status|abort|promote --------------------------------------------------

@pytest.fixture
def repo(tmp_path: Path) -> str:
    return str(write_repo(tmp_path / "repo"))


def connected(monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> None:
    monkeypatch.setattr(Cluster, "connect", classmethod(lambda cls, *_a, **_k: nullcontext(cluster)))


@pytest.mark.parametrize(("argv", "model", "path"), [
    ([], None, "."), (["scorer"], "scorer", "."), (["."], None, "."), (["repo/"], None, "repo/"),
    (["scorer", "repo"], "scorer", "repo"),
])
def test_rollout_status_arguments(argv: list[str], model: str | None, path: str) -> None:
    args = cli.build_parser().parse_args(["rollout", "status", *argv])
    cli.rollout_args(args)
    assert (args.model, args.path) == (model, path)


def test_abort_and_promote_take_their_flags() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["rollout", "abort", "scorer", "repo", "--reason", "why", "--as", "bob", "-n", "team"])
    assert (args.model, args.path, args.reason, args.who, args.namespace) == ("scorer", "repo", "why", "bob", "team")
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "promote", "scorer", "--reason", "x"])  # --reason is abort's
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "abort"])  # MODEL is required


def test_who_defaults_to_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "carol")
    assert cli.who(argparse.Namespace(who=None)).startswith("carol@")
    assert cli.who(argparse.Namespace(who="ci-bot")) == "ci-bot"


def test_status_lists_the_rollout(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  repo: str) -> None:
    connected(monkeypatch, FakeCluster([state()]))
    assert cli.main(["rollout", "status", repo]) == 0
    out = capsys.readouterr().out
    assert "team/scorer" in out and "Progressing" in out and "2/3" in out and "50%" in out


def test_abort_writes_aborted_and_audits(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         repo: str, tmp_path: Path) -> None:
    cluster = FakeCluster([state()])
    connected(monkeypatch, cluster)
    log = tmp_path / "audit.jsonl"
    assert cli.main(["rollout", "abort", "scorer", repo, "--as", "dave", "--reason", "latency",
                     "--audit-log", str(log)]) == 0
    stored = cluster.stored()
    assert (stored.phase, stored.traffic) == ("Aborted", 0)
    assert stored.history[-1]["kind"] == "aborted" and "dave (latency)" in stored.message
    record = json.loads(log.read_text().splitlines()[0])
    assert record["event"] == "rollout-override" and record["action"] == "abort" and record["model"] == KEY


def test_promote_skips_to_succeeded(monkeypatch: pytest.MonkeyPatch, repo: str) -> None:
    cluster = FakeCluster([state(step=0, traffic=10)])
    connected(monkeypatch, cluster)
    assert cli.main(["rollout", "promote", "scorer", repo]) == 0
    stored = cluster.stored()
    assert (stored.phase, stored.step, stored.traffic) == ("Succeeded", 2, 100)


@pytest.mark.parametrize("command", ["abort", "promote"])
def test_no_state_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], repo: str,
                            command: str) -> None:
    cluster = FakeCluster()
    connected(monkeypatch, cluster)
    assert cli.main(["rollout", command, "scorer", repo]) == 2
    assert "team/scorer has no rollout state in modelops-system/modelops-rollouts-team" in capsys.readouterr().err
    assert cluster.cm is None  # nothing written


def test_unknown_model_and_stale_state_are_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], repo: str) -> None:
    connected(monkeypatch, FakeCluster([state(version="3")]))
    assert cli.main(["rollout", "abort", "nosuch", repo]) == 2
    assert "no model 'nosuch'" in capsys.readouterr().err
    assert cli.main(["rollout", "promote", "scorer", repo]) == 2
    assert "of version 3 but Git has canary 2" in capsys.readouterr().err


def test_override_of_a_finished_phase_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], repo: str) -> None:
    cluster = FakeCluster([state(phase="Aborted", traffic=0)])
    connected(monkeypatch, cluster)
    before = json.dumps(cluster.cm)
    assert cli.main(["rollout", "abort", "scorer", repo]) == 0
    assert "Aborted already" in capsys.readouterr().out
    assert json.dumps(cluster.cm) == before
