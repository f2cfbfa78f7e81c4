"""Unit tests of agent.resolve: registry references -> URIs, digests and metrics, with fake
registries (no network); gates that waited for the run's metrics; the cache; errors."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import ValidationFailed
from agent.registry import RegistryError, ResolvedVersion
from agent.resolve import Resolution, resolve_spec, summary_lines
from agent.spec import RegistryRef, Spec
from tests.unit.conftest import MODEL, loads, repo

DIGEST = "sha256:" + "b" * 64


class FakeMlflow:
    """Answers from a table: (name, version or "@alias") -> ResolvedVersion; counts calls."""

    def __init__(self, table: dict[tuple[str, str], ResolvedVersion]) -> None:
        self.table = table
        self.calls: list[tuple[str, str | None, str | None]] = []

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None) -> ResolvedVersion:
        self.calls.append((name, version, alias))
        hit = self.table.get((name, version if version is not None else f"@{alias}"))
        if hit is None:
            raise RegistryError(f"MLflow https://mlflow.example: registered model {name!r} has no such version")
        return hit


class FakeGto:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def resolve(self, name: str, *, version: str | None = None, stage: str | None = None,
                repo: str | None = None) -> ResolvedVersion:
        self.calls.append({"name": name, "version": version, "stage": stage, "repo": repo})
        return ResolvedVersion(registry="gto", name=name, version="v1.2.0", uri="s3://models/gto/v1.2.0",
                               run_id=None, digest=None, alias=stage, metrics={})


def _mv(version: str, uri: str, run_id: str = "abc", **metrics: float) -> ResolvedVersion:
    return ResolvedVersion(registry="mlflow", name="fraud-scorer", version=version, uri=uri, run_id=run_id,
                           digest=DIGEST, alias=None, metrics=dict(metrics))


CHAMPION = _mv("13", "s3://mlflow/13/model", auc=0.95, f1=0.8)
TABLE = {("fraud-scorer", "@champion"): CHAMPION, ("fraud-scorer", "12"): _mv("12", "s3://mlflow/12/model", auc=0.94)}

_URI = "      uri: s3://models/scorer/1/\n"


def _spec(versions: str, tail: str = "", stable: str = '"1"') -> Spec:
    """The baseline Model with `versions` as its version list (indented 4) and `tail` after."""
    body = MODEL.split("  versions:\n")[0] + "  versions:\n" + versions + f"  stable: {stable}\n" + tail
    return loads(repo({"models/scorer.yaml": body}))


TWO = """\
    - version: "1"
      registry: {mlflow: {name: fraud-scorer, version: "12"}}
    - version: "2"
      registry: {mlflow: {name: fraud-scorer, alias: champion}}
"""


def test_uris_digests_and_metrics_replaced() -> None:
    spec = _spec(TWO, '  canary: {version: "2", traffic: 10}\n')
    mlflow = FakeMlflow(TABLE)
    out, resolutions = resolve_spec(spec, {"mlflow": mlflow})
    versions = out.models[0].versions
    assert versions["1"].uri == "s3://mlflow/12/model" and versions["1"].digest == DIGEST
    assert versions["2"].uri == "s3://mlflow/13/model" and versions["2"].evaluation == {"auc": 0.95, "f1": 0.8}
    assert versions["2"].registry == RegistryRef(kind="mlflow", name="fraud-scorer", alias="champion")
    assert [(r.key, r.version, r.resolved.version) for r in resolutions] == [("fraud/scorer", "1", "12"),
                                                                            ("fraud/scorer", "2", "13")]
    assert mlflow.calls == [("fraud-scorer", "12", None), ("fraud-scorer", None, "champion")]


def test_input_untouched() -> None:
    spec = _spec(TWO)
    before = repr(spec)
    out, _ = resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    assert repr(spec) == before
    assert spec.models[0].versions["1"].uri == ""
    assert out is not spec and out.models[0] is not spec.models[0]


def test_spec_without_registry_versions_is_returned_as_is() -> None:
    spec = loads(repo())
    out, resolutions = resolve_spec(spec, {})
    assert out == spec and out.models[0] is spec.models[0] and resolutions == []


def test_hand_written_evaluation_wins_per_key() -> None:
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, alias: champion}}\n'
                 '      evaluation: {auc: 0.97}\n')
    out, _ = resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    assert out.models[0].versions["1"].evaluation == {"auc": 0.97, "f1": 0.8}


GATE = "  gates:\n    - {metric: auc, min: 0.96}\n"


def test_gate_missed_by_the_runs_metrics_is_refused() -> None:
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, alias: champion}}\n', GATE)
    assert spec.models[0].deferred_gates == ("1",)
    with pytest.raises(ValidationFailed) as info:
        resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    [err] = info.value.errors
    assert (err.file, err.line, err.field) == ("models/scorer.yaml", 11, "spec.versions[0].registry")
    assert err.message == ("promotion gate: stable version '1' has auc=0.95 from MLflow run abc, "
                           "below the minimum 0.96")


def test_gate_met_by_the_runs_metrics() -> None:
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, alias: champion}}\n',
                 "  gates:\n    - {metric: auc, min: 0.93}\n    - {metric: f1, max: 0.9}\n")
    out, _ = resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    assert out.models[0].deferred_gates == ()


def test_gate_metric_missing_everywhere() -> None:
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, version: "12"}}\n',
                 "  gates:\n    - {metric: recall, min: 0.5}\n")
    with pytest.raises(ValidationFailed) as info:
        resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    assert "has no recorded evaluation of 'recall' (neither in evaluation: nor in MLflow run abc)" in str(info.value)


def test_gates_of_a_version_that_does_not_serve_are_not_checked() -> None:
    spec = _spec('    - version: "1"\n      uri: s3://m/1\n      evaluation: {auc: 0.99}\n' + TWO.replace('"1"', '"0"', 1),
                 GATE)
    out, _ = resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    assert out.models[0].versions["2"].uri == "s3://mlflow/13/model"


def test_cache_resolves_each_reference_once() -> None:
    body = MODEL.replace(_URI, "      registry: {mlflow: {name: fraud-scorer, alias: champion}}\n")
    other = body.replace("name: scorer", "name: other")
    spec = loads(repo({"models/scorer.yaml": body, "models/other.yaml": other}))
    mlflow = FakeMlflow(TABLE)
    cache: dict[Any, ResolvedVersion] = {}
    out, resolutions = resolve_spec(spec, {"mlflow": mlflow}, cache)
    assert len(mlflow.calls) == 1 and len(resolutions) == 2
    assert {m.versions["1"].uri for m in out.models} == {"s3://mlflow/13/model"}
    resolve_spec(spec, {"mlflow": mlflow}, cache)  # a second pass of the same plan: no new call
    assert len(mlflow.calls) == 1
    resolve_spec(spec, {"mlflow": mlflow})  # no cache given: asked again
    assert len(mlflow.calls) == 2


def test_registry_error_reraised_naming_model_entry_and_reference() -> None:
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, version: "99"}}\n')
    with pytest.raises(RegistryError) as info:
        resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})
    text = str(info.value)
    assert text.startswith("models/scorer.yaml:11: model fraud/scorer version '1' (mlflow fraud-scorer/99): ")
    assert "has no such version" in text
    assert isinstance(info.value.__cause__, RegistryError)


def test_missing_registry() -> None:
    spec = _spec('    - version: "1"\n      registry: {gto: {name: fraud-scorer, stage: prod}}\n')
    with pytest.raises(RegistryError, match=r"model fraud/scorer version '1' \(gto fraud-scorer#prod\): no GTO registry"):
        resolve_spec(spec, {"mlflow": FakeMlflow(TABLE)})


def test_registry_without_uri_refused() -> None:
    empty = ResolvedVersion(registry="mlflow", name="fraud-scorer", version="12", uri="", run_id=None, digest=None,
                            alias=None, metrics={})
    spec = _spec('    - version: "1"\n      registry: {mlflow: {name: fraud-scorer, version: "12"}}\n')
    with pytest.raises(RegistryError, match="gave no artifact URI"):
        resolve_spec(spec, {"mlflow": FakeMlflow({("fraud-scorer", "12"): empty})})


def test_gto_reference_passes_stage_and_repo() -> None:
    spec = _spec('    - version: "1"\n      registry: {gto: {name: fraud-scorer, stage: prod, repo: ../ml}}\n')
    gto = FakeGto()
    out, resolutions = resolve_spec(spec, {"gto": gto})
    assert gto.calls == [{"name": "fraud-scorer", "version": None, "stage": "prod", "repo": "../ml"}]
    assert out.models[0].versions["1"].uri == "s3://models/gto/v1.2.0"
    assert out.models[0].versions["1"].digest is None
    assert summary_lines(resolutions) == [
        "fraud/scorer 1: gto fraud-scorer#prod (repo ../ml) -> version v1.2.0 (s3://models/gto/v1.2.0)"]


def test_summary_lines() -> None:
    ref = RegistryRef(kind="mlflow", name="fraud-scorer", alias="champion")
    resolved = _mv("13", "s3://mlflow/abc/model")
    assert summary_lines([Resolution("fraud/fraud-scorer", "13", ref, resolved)]) == [
        "fraud/fraud-scorer 13: mlflow fraud-scorer@champion -> version 13 (s3://mlflow/abc/model)"]
