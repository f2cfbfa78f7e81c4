"""The agent's MLflow registry client against a real MLflow server (tools/mlflow): versions and
aliases registered through the REST API resolve to the version, source and run metrics; a
moved alias resolves to its new version; mlflow_down leaves no process behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agent.registry import MlflowRegistry, RegistryError
from devenv import cluster as dc
from devenv.cluster import MlflowInfo
from tests.integration import _mlflow as ml

pytestmark = pytest.mark.integration


def _model(mlflow: MlflowInfo) -> tuple[str, list[str], list[str]]:
    """A registered model with two versions from two runs; alias champion -> version 1."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    exp = ml.experiment(mlflow.url, f"exp-{name}")
    runs = [ml.run(mlflow.url, exp, {"auc": [0.80, 0.91], "latency_ms": [12.0]}),
            ml.run(mlflow.url, exp, {"auc": [0.93], "latency_ms": [15.5]})]
    ml.registered_model(mlflow.url, name)
    versions = [ml.model_version(mlflow.url, name, f"runs:/{r}/model", r) for r in runs]
    ml.set_alias(mlflow.url, name, "champion", versions[0])
    return name, runs, versions


def test_resolve_by_version_and_alias(mlflow: MlflowInfo) -> None:
    name, runs, versions = _model(mlflow)
    assert versions == ["1", "2"]
    registry = MlflowRegistry(mlflow.url, timeout=5.0)

    v2 = registry.resolve(name, version="2")
    assert (v2.registry, v2.name, v2.version, v2.uri, v2.run_id, v2.digest, v2.alias) == (
        "mlflow", name, "2", ml.stored(mlflow.url, runs[1]), runs[1], None, None)
    assert v2.uri.startswith("s3://mlflow-test/")  # runs:/ resolved to where the run stores it
    assert v2.metrics == {"auc": 0.93, "latency_ms": 15.5}

    champion = registry.resolve(name, alias="champion")
    assert (champion.version, champion.alias, champion.run_id) == ("1", "champion", runs[0])
    assert champion.metrics == {"auc": 0.91, "latency_ms": 12.0}  # the latest value per key

    ml.set_alias(mlflow.url, name, "champion", "2")
    moved = registry.resolve(name, alias="champion")
    assert (moved.version, moved.uri, moved.metrics["auc"]) == ("2", ml.stored(mlflow.url, runs[1]), 0.93)


def test_version_without_run_has_no_metrics(mlflow: MlflowInfo) -> None:
    name = f"plain-{uuid.uuid4().hex[:8]}"
    ml.registered_model(mlflow.url, name)
    version = ml.model_version(mlflow.url, name, "s3://bucket/models/plain/1")
    resolved = MlflowRegistry(mlflow.url).resolve(name, version=version)
    assert (resolved.uri, resolved.run_id, resolved.metrics) == ("s3://bucket/models/plain/1", None, {})


def test_logged_model_source_resolves_to_its_storage_location(mlflow: MlflowInfo) -> None:
    """MLflow 3 registers logged models as `models:/m-...`: the URI to serve is where the logged
    model's artifacts are, which only get-download-uri tells."""
    name = f"logged-{uuid.uuid4().hex[:8]}"
    exp = ml.experiment(mlflow.url, f"exp-{name}")
    run_id = ml.run(mlflow.url, exp, {"auc": [0.88]})
    model_id, location = ml.logged_model(mlflow.url, exp, run_id)
    ml.registered_model(mlflow.url, name)
    version = ml.model_version(mlflow.url, name, f"models:/{model_id}", run_id, model_id)
    resolved = MlflowRegistry(mlflow.url).resolve(name, version=version)
    assert location.startswith("s3://mlflow-test/") and model_id in location
    assert (resolved.uri, resolved.run_id, resolved.metrics) == (location, run_id, {"auc": 0.88})


def test_unknown_references_name_what_failed(mlflow: MlflowInfo) -> None:
    name, _, _ = _model(mlflow)
    registry = MlflowRegistry(mlflow.url, token="s3cr3t-token")
    with pytest.raises(RegistryError) as err:
        registry.resolve(name, version="7")
    text = str(err.value)
    assert name in text and "version 7" in text and "not found" in text and mlflow.url in text
    assert "RESOURCE_DOES_NOT_EXIST" in text and "s3cr3t" not in text
    with pytest.raises(RegistryError, match="alias 'nope'"):
        registry.resolve(name, alias="nope")
    with pytest.raises(RegistryError, match="not found"):
        registry.resolve(f"missing-{uuid.uuid4().hex[:6]}", version="1")


def _leftovers(directory: Path) -> list[int]:
    needle = str(directory.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X"):
                continue
            if any(needle in (entry / f).read_bytes() for f in ("cmdline", "environ")):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_down_leaves_no_process(tmp_path: Path) -> None:
    """Its own server (the session's stays up): up, registry answers, down, nothing left;
    up again on the same data, down again (idempotent)."""
    info = dc.mlflow_up(tmp_path)
    try:
        assert _leftovers(tmp_path), "the server should name its directory"
        ml.registered_model(info.url, "kept")
        ml.model_version(info.url, "kept", "s3://b/kept")
    finally:
        dc.mlflow_down(tmp_path)
    assert _leftovers(tmp_path) == []
    again = dc.mlflow_up(tmp_path)
    try:
        assert MlflowRegistry(again.url).resolve("kept", version="1").uri == "s3://b/kept"
    finally:
        dc.mlflow_down(tmp_path)
        dc.mlflow_down(tmp_path)
    assert _leftovers(tmp_path) == []
