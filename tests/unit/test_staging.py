"""Staging (#11): a KServe model's canary waits until its InferenceService runs a Ready revision
of the stable version; until then the model renders with the stable version at 100%."""

from __future__ import annotations

from typing import Any

import pytest

from agent.render import render
from agent.rollout import staged, without_canary
from agent.spec import Canary, Model, ModelVersion, RepositoryConfig, Spec


def _model(name: str = "scorer", *, backend: str = "kserve", canary: str | None = "13") -> Model:
    return Model(
        name=name, namespace="fraud", format="sklearn", stable="12", backend=backend,  # type: ignore[arg-type]
        versions={v: ModelVersion(v, f"s3://m/{name}/{v}") for v in ("12", "13")},
        stage="production", runtime="mlserver" if backend == "kubernetes" else None,
        canary=Canary(canary, 10) if canary else None,
    )


def _isvc(*, labels: dict[str, str] | None = None, canary: int | None = None, generation: int = 1,
          status: dict[str, Any] | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://m/scorer/12"}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "scorer", "namespace": "fraud", "generation": generation,
                     "labels": {"modelops.dev/version": "12"} if labels is None else labels},
        "spec": {"predictor": predictor},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _status(ready: str | None = "True", *, latest_ready: str | None = "scorer-predictor-00001",
            latest_created: str | None = None, observed: int = 1, mode: str | None = None,
            reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if ready is not None:
        status["conditions"] = [
            {"type": "PredictorReady", "status": ready},
            {"type": "Ready", "status": ready, **({"reason": reason} if reason else {})},
        ]
    predictor = {}
    if latest_ready:
        predictor["latestReadyRevision"] = latest_ready
    if latest_created or latest_ready:
        predictor["latestCreatedRevision"] = latest_created or latest_ready
    if predictor:
        status["components"] = {"predictor": predictor}
    if mode:
        status["deploymentMode"] = mode
    return status


WAITS = "canary 13 waits for the stable revision to be Ready"


@pytest.mark.parametrize(("live", "detail"), [
    (None, "InferenceService scorer does not exist yet: version 12 goes first"),
    (_isvc(), "no status yet"),
    (_isvc(status={}), "no status yet"),
    (_isvc(status=_status(None, latest_ready=None)), "no Ready condition yet"),
    (_isvc(status=_status("False", latest_ready=None, reason="RevisionMissing")), "Ready is False: RevisionMissing"),
    (_isvc(status=_status("Unknown", latest_ready=None)), "Ready is Unknown"),
    (_isvc(status=_status("True", latest_ready=None)), "no Ready predictor revision yet"),
    (_isvc(generation=2, status=_status("True", observed=1)), "KServe has not observed generation 2 yet"),
    (_isvc(status=_status("True", latest_created="scorer-predictor-00002")),
     "revision scorer-predictor-00002 is not Ready yet"),
    # an older version is Ready, but Git's stable one has not been rolled out yet
    (_isvc(labels={"modelops.dev/version": "11"}, status=_status("True")), "it serves version 11, not 12 yet"),
])
def test_canary_waits(live: dict[str, Any] | None, detail: str) -> None:
    live_map = {} if live is None else {("fraud", "scorer"): live}
    assert staged([_model()], live_map) == {"fraud/scorer": f"{WAITS} ({detail})"}


@pytest.mark.parametrize("live", [
    _isvc(status=_status("True")),  # Ready True with a latestReadyRevision: the stable version serves
    _isvc(labels={}, status=_status("True")),  # no version label (adopted): the status alone decides
    _isvc(canary=10),  # a canary was applied before: KServe tracks a rolled-out revision already
    _isvc(canary=0, labels={"modelops.dev/version": "13"}, status=_status("False")),  # even when not Ready
    _isvc(status=_status("True", latest_ready=None, mode="RawDeployment")),  # raw mode has no revisions
])
def test_canary_goes_ahead(live: dict[str, Any]) -> None:
    assert staged([_model()], {("fraud", "scorer"): live}) == {}


def test_an_explicit_none_is_a_missing_object() -> None:
    assert staged([_model()], {("fraud", "scorer"): None}) == {"fraud/scorer": f"{WAITS} "
                                                                "(InferenceService scorer does not exist yet: version 12 goes first)"}


def test_only_kserve_models_with_a_canary_are_staged() -> None:
    models = [_model("a", backend="kubernetes"), _model("b", canary=None), _model("c")]
    assert staged(models, {}) == {"fraud/c": f"{WAITS} (InferenceService c does not exist yet: version 12 goes first)"}


def test_the_live_object_is_looked_up_by_namespace_and_name() -> None:
    ready = _isvc(status=_status("True"))
    assert staged([_model("scorer")], {("other", "scorer"): ready}) != {}
    assert staged([_model("scorer")], {("fraud", "scorer"): ready}) == {}


def test_without_canary_renders_the_stable_version_at_100() -> None:
    spec = Spec(config=RepositoryConfig(name="t"), models=(_model("a"), _model("b")))
    staged_spec = without_canary(spec, {"fraud/a"})
    assert [m.canary for m in staged_spec.models] == [None, Canary("13", 10)]
    isvcs = {o["metadata"]["name"]: o for o in render(staged_spec) if o["kind"] == "InferenceService"}
    assert "canaryTrafficPercent" not in isvcs["a"]["spec"]["predictor"]
    assert isvcs["a"]["spec"]["predictor"]["model"]["storageUri"] == "s3://m/a/12"
    assert isvcs["a"]["metadata"]["labels"]["modelops.dev/version"] == "12"
    assert isvcs["b"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert spec.models[0].canary == Canary("13", 10), "the input is not changed"


def test_without_canary_of_nothing_is_the_same_spec() -> None:
    spec = Spec(config=RepositoryConfig(name="t"), models=(_model("a"),))
    assert without_canary(spec, set()) is spec
    assert without_canary(spec, {"fraud/zzz"}) is spec
