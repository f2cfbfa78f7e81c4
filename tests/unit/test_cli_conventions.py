"""CLI conventions (issue #9): settled health for --wait and status, kubeconfig errors, the
repo root found from a subdirectory. No cluster: the cluster-facing parts are replaced."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any

import pytest

import agent.desired
from agent import cli, engine, output
from agent.cluster import Cluster


def _model(name: str, health: str, synced: bool = True) -> dict[str, Any]:
    return {"namespace": "ns", "name": name, "version": "1", "canary": None, "synced": synced, "health": health,
            "message": "", "objects": [], "lastApply": {"commit": "", "time": "", "result": "never"}}


def _status(*models: dict[str, Any]) -> dict[str, Any]:
    return {"target": "t", "revision": {}, "lastApply": {}, "invalidCommit": None, "models": list(models)}


# --- item 3: Unknown and Progressing are not settled ------------------------------------------

def test_wait_does_not_take_unknown_for_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    polls = []

    def fake(*_a: object, **_k: object) -> dict[str, Any]:
        polls.append(1)
        return _status(_model("a", "Healthy"), _model("b", "Unknown"), _model("c", "Progressing"))

    seen: list[list[str]] = []
    result = engine.wait_healthy(None, None, timeout=0.05, interval=0.01, allow_unknown=False,  # type: ignore[arg-type]
                                 progress=lambda _s, pending: seen.append(pending), status_of=fake)
    assert len(polls) > 1  # it waited instead of returning at once
    assert result["timedOut"] and result["unsettled"] == ["ns/b", "ns/c"]
    assert seen[-1] == ["ns/b", "ns/c"]

    result = engine.wait_healthy(None, None, timeout=0.05, interval=0.01, allow_unknown=True,  # type: ignore[arg-type]
                                 status_of=fake)
    assert result["timedOut"] and result["unsettled"] == ["ns/c"]


def test_wait_returns_once_healthy_or_degraded(monkeypatch: pytest.MonkeyPatch) -> None:
    result = engine.wait_healthy(None, None, timeout=10, allow_unknown=False,  # type: ignore[arg-type]
                                 status_of=lambda *_a, **_k: _status(_model("a", "Healthy"), _model("d", "Degraded")))
    assert not result["timedOut"] and result["unsettled"] == [] and result["degraded"] == ["ns/d"]


def _offline_status(monkeypatch: pytest.MonkeyPatch, result: dict[str, Any]) -> None:
    no_environments = SimpleNamespace(spec=SimpleNamespace(environments=()))  # a repo without environments
    monkeypatch.setattr(engine, "load_desired", lambda *_a, **_k: no_environments)
    monkeypatch.setattr(Cluster, "connect", classmethod(lambda cls, *_a, **_k: nullcontext()))
    monkeypatch.setattr(engine.Engine, "status", lambda *_a, **_k: result)


@pytest.mark.parametrize(("health", "flags", "code"), [
    ("Healthy", [], 0),
    ("Unknown", [], 1),
    ("Unknown", ["--allow-unknown"], 0),
    ("Progressing", ["--allow-unknown"], 1),
    ("Degraded", ["--allow-unknown"], 1),
])
def test_status_exit_code_on_health(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                    health: str, flags: list[str], code: int) -> None:
    _offline_status(monkeypatch, _status(_model("a", "Healthy"), _model("b", health)))
    assert cli.main(["status", ".", *flags]) == code
    assert "ns/b" in capsys.readouterr().out


def test_status_not_synced_is_1_even_with_allow_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    _offline_status(monkeypatch, _status(_model("a", "Unknown", synced=False)))
    assert cli.main(["status", ".", "--allow-unknown", "-o", "json"]) == 1


def test_allow_unknown_is_documented() -> None:
    parser = cli.build_parser()
    for command in ("status", "apply"):
        sub = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)[1]  # type: ignore[union-attr]
        assert "--allow-unknown" in sub.format_help()


# --- item 4: a missing kubeconfig is named, in-cluster only when none is configured -------------

KUBECONFIG_TEXT = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def no_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[str]:
    """HOME without ~/.kube/config, no $KUBECONFIG; records in-cluster attempts."""
    from kubernetes import config as k8s_config

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    calls: list[str] = []

    def incluster(**_k: object) -> None:
        calls.append("in-cluster")
        raise k8s_config.ConfigException("Service host/port is not set.")

    monkeypatch.setattr(k8s_config, "load_incluster_config", incluster)
    return calls


def test_missing_kubeconfig_env_is_named(monkeypatch: pytest.MonkeyPatch, no_kubeconfig: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from agent.errors import AgentError

    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    with pytest.raises(AgentError, match=r"kubeconfig /nonexistent \(KUBECONFIG=/nonexistent\): no such file"):
        Cluster.connect()
    assert no_kubeconfig == []  # a configured kubeconfig is never replaced by in-cluster credentials
    assert cli.main(["audit", "verify", "audit.jsonl", "--target", "t"]) == 2  # the CLI's message
    err = capsys.readouterr().err
    assert "/nonexistent" in err and "Service host/port" not in err


def test_missing_explicit_kubeconfig_is_named(no_kubeconfig: list[str], tmp_path: Any) -> None:
    from agent.errors import AgentError

    missing = tmp_path / "nope.yaml"
    with pytest.raises(AgentError, match=rf"kubeconfig {missing} \(--kubeconfig {missing}\): no such file"):
        Cluster.connect(str(missing))
    assert no_kubeconfig == []


def test_in_cluster_only_when_no_kubeconfig_at_all(no_kubeconfig: list[str]) -> None:
    from agent.errors import AgentError

    with pytest.raises(AgentError, match=r"no kubeconfig .* not running in a cluster"):
        Cluster.connect()
    assert no_kubeconfig == ["in-cluster"]


def test_home_and_env_kubeconfig_are_used(monkeypatch: pytest.MonkeyPatch, no_kubeconfig: list[str],
                                          tmp_path: Any) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(KUBECONFIG_TEXT)
    with Cluster.connect() as cluster:
        assert cluster.host == "https://127.0.0.1:6443"
    other = tmp_path / "other.yaml"
    other.write_text(KUBECONFIG_TEXT.replace("6443", "7443"))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing.yaml'}:{other}")  # a list: the files present count
    with Cluster.connect() as cluster:
        assert cluster.host == "https://127.0.0.1:7443"
    assert no_kubeconfig == []


# --- item 2: the repo root, found from a subdirectory ------------------------------------------

GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]


@pytest.fixture
def model_repo(tmp_path: Any) -> Any:
    """tmp/outer/{git top}/model-repo: a copy of the example inside a git repository."""
    import shutil
    import subprocess
    from pathlib import Path

    top = tmp_path / "top"
    repo = top / "model-repo"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "model-repo", repo)
    subprocess.run([*GIT, "init", "-q", str(top)], check=True)
    subprocess.run([*GIT, "-C", str(top), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(top), "commit", "-qm", "models"], check=True)
    return repo


@pytest.mark.parametrize("revision", [[], ["--revision", "HEAD"]])
def test_validate_from_a_subdirectory_uses_the_repo_root(model_repo: Any, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], revision: list[str]) -> None:
    sub = model_repo / "teams" / "fraud"
    monkeypatch.chdir(sub)
    assert cli.main(["validate", *revision]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "note: using the model repo at ../.." in captured.err
    assert captured.out.startswith("ok: ../.. @")
    # an explicit PATH below the root too, named as given
    monkeypatch.chdir(model_repo.parent)
    assert cli.main(["validate", "model-repo/teams", *revision]) == 0
    assert "using the model repo at model-repo " in capsys.readouterr().err


def test_the_root_itself_gets_no_note(model_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(model_repo)]) == 0
    assert "note:" not in capsys.readouterr().err


def test_render_from_a_subdirectory_renders_the_whole_repo(model_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", str(model_repo), "-o", "json"]) == 0
    whole = capsys.readouterr().out
    assert cli.main(["render", str(model_repo / "teams"), "-o", "json"]) == 0
    assert capsys.readouterr().out == whole


def test_the_walk_stops_at_the_git_top_level(model_repo: Any) -> None:
    import shutil

    top = model_repo.parent
    shutil.move(str(model_repo / "repo.yaml"), str(top.parent / "repo.yaml"))  # above the git top level
    (model_repo / "stray.yml").write_text("kind: Model  # not kind: RepositoryConfig\n")
    assert cli.find_repo_root(str(model_repo / "teams")) is None
    shutil.move(str(top.parent / "repo.yaml"), str(top / "repo.yml"))  # the git top level itself counts
    assert cli.find_repo_root(str(model_repo / "teams")) == top


# --- conventions: version, help on every flag, no Python reprs ---------------------------------

def _parsers(parser: Any, path: tuple[str, ...] = ()) -> Any:
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_version_flag_and_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"agent {cli.agent_version()}\n") and cli.agent_version() != "unknown"
    assert "tested with: Kubernetes v1." in text and "KServe v" in text and "Prometheus Operator v" in text
    assert cli.main(["version"]) == 0 and capsys.readouterr().out == text


def test_tested_with_says_unknown_outside_the_source_tree(tmp_path: Any) -> None:
    assert set(cli.tested_with(tmp_path).values()) == {"unknown"}


def test_every_flag_has_help() -> None:
    missing = [f"agent {' '.join(path)} {action.option_strings or action.dest}"
               for path, parser in _parsers(cli.build_parser()) for action in parser._actions
               if not action.help and not action.__class__.__name__.startswith("_SubParsers")]
    assert not missing


def test_plain_values() -> None:
    assert output.plain({"GET": 11, "PATCH (dry-run)": 2}) == "GET 11, PATCH (dry-run) 2"
    assert output.plain({}) == "-" and output.plain(None) == "-" and output.plain(["a", "b"]) == "a, b"


# --- conventions: machine-readable validate and status -----------------------------------------

@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_validate_output_documents(fmt: str, model_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert cli.main(["validate", str(model_repo), "-o", fmt]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)  # JSON is YAML
    assert doc["valid"] is True and doc["errors"] == []
    assert doc["counts"]["models"] == 5 and doc["counts"]["objects"] > 0

    model = next((model_repo / "teams").rglob("models/*.yaml"))
    model.write_text(model.read_text().replace("apiVersion:", "bogusField: 1\napiVersion:", 1))
    assert cli.main(["validate", str(model_repo), "-o", fmt]) == 2
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["valid"] is False and doc["counts"] is None
    assert doc["errors"] and set(doc["errors"][0]) == {"file", "line", "field", "message"}
    assert any(e["file"].endswith(model.name) and isinstance(e["line"], int) for e in doc["errors"])


def test_status_yaml(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    _offline_status(monkeypatch, _status(_model("a", "Healthy")))
    assert cli.main(["status", ".", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["models"][0]["name"] == "a"


# --- conventions: apply -q, -v ------------------------------------------------------------------

def _offline_apply(monkeypatch: pytest.MonkeyPatch, repo: Any, seen: list[Any] | None = None) -> Any:
    """apply against no cluster: the engine's apply is replaced by one that 'applies' every object."""
    from agent.apply import ApplyReport
    from agent.apply._engine import ObjectResult
    from agent.engine import Engine, SyncResult, load_desired
    from agent.plan import build_plan, diff_objects

    plan = build_plan(diff_objects(load_desired(repo).objects, []))
    outcome = SyncResult(plan, ApplyReport([ObjectResult(c, "applied") for c in plan.changed]), {"GET": 11, "PATCH": 2})
    outcome.report.results[0].outcome = "failed"
    outcome.report.results[0].message = "boom"

    def fake(self: Engine, desired: Any, progress: Any = None, **_k: Any) -> SyncResult:
        if seen is not None:
            seen.append(self.options)
        return outcome

    monkeypatch.setattr(Engine, "apply", fake)
    monkeypatch.setattr(Cluster, "connect", classmethod(lambda cls, *_a, **_k: nullcontext()))
    return outcome


def test_apply_quiet_prints_summaries_and_failures_only(monkeypatch: pytest.MonkeyPatch, model_repo: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    outcome = _offline_apply(monkeypatch, model_repo)
    assert cli.main(["apply", str(model_repo), "--color", "never"]) == 2  # one object failed
    loud = capsys.readouterr().out
    assert cli.main(["apply", str(model_repo), "--color", "never", "-q"]) == 2
    quiet = capsys.readouterr().out
    first_ok = outcome.report.results[1].change.ref
    assert f"applied   create  {first_ok}" in loud and "applied   create" not in quiet  # no line per applied object
    assert "+++" not in quiet and "+++" in loud  # no diff
    assert "boom" in quiet  # failures still named
    assert "requests: GET 11, PATCH 2" in quiet and "{" not in quiet.splitlines()[-1]


def test_verbose_logs_debug_to_stderr(monkeypatch: pytest.MonkeyPatch, model_repo: Any) -> None:
    import logging

    configured: list[int] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **k: configured.append(k["level"]))
    assert cli.main(["validate", str(model_repo), "-v"]) == 0
    assert configured == [logging.DEBUG]


# --- conventions: shell completion --------------------------------------------------------------

def _bash_complete(script: str, *words: str) -> list[str]:
    import shlex
    import subprocess

    line = " ".join(shlex.quote(w) for w in words)
    program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _agent_complete; "
               'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                          check=True, timeout=30)
    return done.stdout.split()


def test_bash_completion_completes_commands_flags_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert {"validate", "render", "diff", "apply", "status", "rollout", "version"} <= set(_bash_complete(script, "agent", ""))
    assert _bash_complete(script, "agent", "ap") == ["apply"]
    assert {"--allow-unknown", "--wait", "--prune", "-q"} <= set(_bash_complete(script, "agent", "apply", "x", ""))
    assert _bash_complete(script, "agent", "status", "-o", "") == ["text", "json", "yaml"]
    assert _bash_complete(script, "agent", "rollout", "")[:3] == ["status", "abort", "promote"]
    assert "--reason" in _bash_complete(script, "agent", "rollout", "abort", "--")


def test_zsh_and_fish_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and "complete -o default -F _agent_complete agent" in zsh
    assert cli.main(["completion", "fish"]) == 0
    fish = capsys.readouterr().out
    assert "complete -c agent -n '__fish_use_subcommand' -a apply" in fish
    assert "complete -c agent -n '__fish_seen_subcommand_from status' -l allow-unknown" in fish
    assert "-s o -l output -x -a 'text json yaml'" in fish


# --- conventions: -n/--namespace and --model filters -------------------------------------------

def test_apply_with_a_filter_applies_only_those_objects(monkeypatch: pytest.MonkeyPatch, model_repo: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from agent.engine import Engine

    applied: list[Any] = []
    _offline_apply(monkeypatch, model_repo)
    inner = Engine.apply

    def spy(self: Engine, desired: Any, progress: Any = None, **k: Any) -> Any:
        # what the engine writes: the objects its options' selection keeps
        applied.append(([o for o in desired.objects if self.options.select.object(o)], self.options))
        return inner(self, desired, progress, **k)

    monkeypatch.setattr(Engine, "apply", spy)
    cli.main(["apply", str(model_repo), "--model", "fraud-scorer", "-q"])
    objects, options = applied[-1]
    assert objects and all(o["metadata"]["labels"]["modelops.dev/model"] == "fraud-scorer" for o in objects)
    assert options.prune is False  # never the repo policy's prune with a filter

    cli.main(["apply", str(model_repo), "-n", "recsys", "-q"])
    objects, _ = applied[-1]
    assert {o["metadata"].get("namespace") or o["metadata"]["name"] for o in objects} == {"recsys"}
    assert any(o["kind"] == "Namespace" for o in objects)


def test_prune_with_a_filter_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch, model_repo: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    def no_cluster(*_a: object, **_k: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr(Cluster, "connect", classmethod(no_cluster))
    assert cli.main(["apply", str(model_repo), "--model", "ranker", "--prune"]) == 2
    assert "--prune with --model ranker is refused" in capsys.readouterr().err
    assert cli.main(["apply", str(model_repo), "--model", "no-such-model"]) == 2
    assert "no model matches --model no-such-model" in capsys.readouterr().err


def test_diff_and_status_filters(monkeypatch: pytest.MonkeyPatch, model_repo: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from agent.plan import build_plan, diff_objects

    everything = build_plan(diff_objects(engine.load_desired(model_repo).objects, []))
    monkeypatch.setattr(agent.desired, "offline_plans", lambda *_a, **_k: [("", everything)])  # diff --base: no engine
    assert cli.main(["diff", str(model_repo), "--base", "HEAD", "--model", "ranker", "-o", "json"]) == 1
    import json

    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"]] == ["ranker"]
    assert cli.main(["diff", str(model_repo), "--base", "HEAD", "-n", "nowhere"]) == 2
    assert "no object matches -n nowhere" in capsys.readouterr().err

    _offline_status(monkeypatch, _status(_model("a", "Healthy"), _model("b", "Degraded")))
    assert cli.main(["status", ".", "--model", "a"]) == 0  # b's Degraded is not looked at
    out = capsys.readouterr().out
    assert "ns/a" in out and "ns/b" not in out
    assert cli.main(["status", ".", "-n", "ns"]) == 1
