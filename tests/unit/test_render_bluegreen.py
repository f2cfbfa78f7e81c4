"""Blue-green rendering (#11): both tracks at full size, the main Service switched by its track
selector, a preview Service of the new version; on KServe canaryTrafficPercent 0/100 plus tag
routing. The canary strategy and models without a rollout render exactly as before."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

import pytest
from _crds import metadata_problems, problems

from agent.errors import ValidationFailed
from agent.render import PREVIEW_SUFFIX, TAG_ROUTING_ANNOTATION, TRACK_LABEL, canonical_json, is_blue_green, render
from agent.spec import Spec, load

_REPO = """
apiVersion: modelops.dev/v1alpha1
kind: RepositoryConfig
metadata:
  name: bluegreen
spec:
  defaults:
    namespace: shop
"""

_RUNTIME = """
apiVersion: modelops.dev/v1alpha1
kind: ServingRuntime
metadata:
  name: mlserver
spec:
  image: seldonio/mlserver:1.6.1
  formats: [sklearn]
  port: 8080
  metricsPort: 8082
"""


def _model(name: str, backend: str, sizing: str, rollout: str = "rollout: {strategy: blueGreen, interval: 10m}",
           canary: str = 'canary: {version: "2"}') -> str:
    return textwrap.dedent(f"""
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: {name}
        spec:
          format: sklearn
          backend: {backend}
          runtime: mlserver
          versions:
            - {{version: "1", uri: "s3://m/{name}/1"}}
            - {{version: "2", uri: "s3://m/{name}/2"}}
          stable: "1"
          {canary}
          {rollout}
          {sizing}
    """)


def _files(**models: str) -> dict[str, bytes]:
    files = {"repo.yaml": _REPO, "runtimes/mlserver.yaml": _RUNTIME}
    files.update({f"models/{name}.yaml": text for name, text in models.items()})
    return {path: textwrap.dedent(text).lstrip().encode() for path, text in files.items()}


def _spec(**models: str) -> Spec:
    return load(_files(**models))


def _with_traffic(spec: Spec, percent: int) -> Spec:
    """What pipeline.with_traffic does for a running rollout: the step's traffic on every canary."""
    models = tuple(
        dataclasses.replace(m, canary=dataclasses.replace(m.canary, traffic=percent)) if m.canary else m
        for m in spec.models
    )
    return dataclasses.replace(spec, models=models)


def _index(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _selects(service: dict[str, Any], deployment: dict[str, Any]) -> bool:
    selector = service["spec"]["selector"].items()
    return selector <= deployment["spec"]["template"]["metadata"]["labels"].items()


FIXED = "replicas: 3"
AUTOSCALED = "autoscaling: {min: 2, max: 8, metric: cpu, target: 70}"


# --- kubernetes backend --------------------------------------------------------------------


@pytest.mark.parametrize("traffic", [0, 100])
def test_both_tracks_run_at_full_size_whatever_the_traffic(traffic: int) -> None:
    objects = _index(render(_with_traffic(_spec(scorer=_model("scorer", "kubernetes", FIXED)), traffic)))
    stable, new = objects[("Deployment", "scorer")], objects[("Deployment", "scorer-canary")]
    assert stable["spec"]["replicas"] == new["spec"]["replicas"] == 3
    assert stable["metadata"]["labels"]["modelops.dev/version"] == "1"
    assert new["metadata"]["labels"]["modelops.dev/version"] == "2"
    assert not [k for k in objects if k[0] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("traffic", [0, 100])
def test_autoscaled_tracks_get_the_same_hpa(traffic: int) -> None:
    objects = _index(render(_with_traffic(_spec(scorer=_model("scorer", "kubernetes", AUTOSCALED)), traffic)))
    for name in ("scorer", "scorer-canary"):
        hpa = objects[("HorizontalPodAutoscaler", name)]
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in objects[("Deployment", name)]["spec"]


@pytest.mark.parametrize(("traffic", "live"), [(0, "scorer"), (100, "scorer-canary")])
def test_main_service_selects_one_track_and_the_preview_the_new_one(traffic: int, live: str) -> None:
    objects = _index(render(_with_traffic(_spec(scorer=_model("scorer", "kubernetes", FIXED)), traffic)))
    main, preview = objects[("Service", "scorer")], objects[("Service", f"scorer{PREVIEW_SUFFIX}")]
    deployments = {name: objects[("Deployment", name)] for name in ("scorer", "scorer-canary")}
    assert {n for n, d in deployments.items() if _selects(main, d)} == {live}
    assert {n for n, d in deployments.items() if _selects(preview, d)} == {"scorer-canary"}
    assert main["spec"]["selector"][TRACK_LABEL] == ("stable" if traffic == 0 else "canary")
    assert preview["spec"]["selector"] == {"modelops.dev/model": "scorer", TRACK_LABEL: "canary"}
    assert preview["spec"]["ports"] == main["spec"]["ports"]
    assert preview["metadata"]["labels"]["modelops.dev/version"] == "2"
    assert main["metadata"]["annotations"]["modelops.dev/canary-traffic"] == str(traffic)


def test_the_switch_changes_only_the_main_services_selector() -> None:
    """Preview -> switched moves no pod: only the Service's selector (and its traffic note) change."""
    spec = _spec(scorer=_model("scorer", "kubernetes", AUTOSCALED))
    before, after = _index(render(_with_traffic(spec, 0))), _index(render(_with_traffic(spec, 100)))
    assert before.keys() == after.keys()
    changed = {k for k in before if canonical_json(before[k]) != canonical_json(after[k])}
    assert changed == {("Service", "scorer"), ("Service", "scorer-preview")}
    assert before[("Service", "scorer-preview")]["spec"] == after[("Service", "scorer-preview")]["spec"]


def test_blue_green_without_a_canary_is_a_plain_model() -> None:
    """A rollout with nothing to roll out renders like no rollout at all: one Service, no preview."""
    with_rollout = _spec(scorer=_model("scorer", "kubernetes", FIXED, canary=""))
    without = _spec(scorer=_model("scorer", "kubernetes", FIXED, canary="", rollout=""))
    assert not is_blue_green(with_rollout.models[0])
    assert [canonical_json(o) for o in render(with_rollout)] == [canonical_json(o) for o in render(without)]


def test_preview_service_name_collides_with_another_model() -> None:
    files = _files(scorer=_model("scorer", "kubernetes", FIXED),
                   **{"scorer-preview": _model("scorer-preview", "kubernetes", FIXED, canary="", rollout="")})
    with pytest.raises(ValidationFailed) as info:
        render(load(files))
    messages = [str(e) for e in info.value.errors]
    assert any("Service/shop/scorer-preview" in m for m in messages), messages


# --- kserve backend ------------------------------------------------------------------------


@pytest.mark.parametrize("traffic", [0, 100])
def test_kserve_blue_green_is_canary_traffic_0_or_100_with_tag_routing(traffic: int) -> None:
    spec = _with_traffic(_spec(scorer=_model("scorer", "kserve", AUTOSCALED)), traffic)
    (isvc,) = [o for o in render(spec) if o["kind"] == "InferenceService"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == traffic
    assert predictor["model"]["storageUri"] == "s3://m/scorer/2"  # KServe: the spec is the newest revision
    assert isvc["metadata"]["annotations"][TAG_ROUTING_ANNOTATION] == "true"
    assert problems(isvc) == []


@pytest.mark.parametrize("rollout", ["rollout: {strategy: canary, steps: [10, 100]}", ""])
def test_kserve_canary_without_blue_green_gets_no_tag_routing(rollout: str) -> None:
    canary = 'canary: {version: "2", traffic: 10}'
    (isvc,) = [o for o in render(_spec(scorer=_model("scorer", "kserve", FIXED, rollout=rollout, canary=canary)))
               if o["kind"] == "InferenceService"]
    assert TAG_ROUTING_ANNOTATION not in isvc["metadata"]["annotations"]


# --- the canary strategy is untouched ------------------------------------------------------


@pytest.mark.parametrize("backend", ["kubernetes", "kserve"])
@pytest.mark.parametrize("sizing", [FIXED, AUTOSCALED])
def test_canary_strategy_renders_like_no_rollout(backend: str, sizing: str) -> None:
    canary = 'canary: {version: "2", traffic: 10}'
    with_rollout = render(_spec(scorer=_model("scorer", backend, sizing, canary=canary,
                                               rollout="rollout: {strategy: canary, steps: [10, 50, 100]}")))
    without = render(_spec(scorer=_model("scorer", backend, sizing, canary=canary, rollout="")))
    assert [canonical_json(o) for o in with_rollout] == [canonical_json(o) for o in without]


# --- every rendered object is acceptable to the apiserver -----------------------------------


@pytest.mark.parametrize("traffic", [0, 100])
@pytest.mark.parametrize("backend", ["kubernetes", "kserve"])
@pytest.mark.parametrize("sizing", [FIXED, AUTOSCALED, "replicas: 0"])
def test_rendered_blue_green_objects_are_valid(traffic: int, backend: str, sizing: str) -> None:
    spec = _with_traffic(_spec(scorer=_model("scorer", backend, sizing)), traffic)
    objects = render(spec)
    for obj in objects:
        assert metadata_problems(obj["metadata"]) == [], obj["metadata"]["name"]
        if obj["kind"] in ("InferenceService", "ServingRuntime"):
            assert problems(obj) == [], obj["metadata"]["name"]
    kinds = sorted(o["kind"] for o in objects)
    if backend == "kubernetes":
        assert kinds.count("Service") == 2 and kinds.count("Deployment") == 2
    else:
        assert kinds == ["InferenceService", "ServingRuntime"]


def test_after_the_switch_each_pod_is_scraped_once() -> None:
    """Both Services select the new pods at 100%: the ServiceMonitor keeps them through the
    preview only (a drop on <name>;canary), so request counts and minRequests do not double."""
    from agent.render._monitor import scrape_config

    spec = _spec(bg=_model("bg", "kubernetes", FIXED),
                 canaried=_model("canaried", "kubernetes", FIXED, rollout="rollout: {strategy: canary, steps: [50, 100]}"))
    models = {m.name: m for m in spec.models}
    runtime = spec.runtimes[0]
    drops = [r for r in scrape_config(models["bg"], runtime)["spec"]["endpoints"][0]["relabelings"]
             if r.get("action") == "drop"]
    assert drops == [{"sourceLabels": ["__meta_kubernetes_service_name", "__meta_kubernetes_pod_label_modelops_dev_track"],
                      "separator": ";", "regex": "bg;canary", "action": "drop"}]
    assert TRACK_LABEL == "modelops.dev/track"  # the pod label the relabeling reads
    canary_relabel = scrape_config(models["canaried"], runtime)["spec"]["endpoints"][0]["relabelings"]
    assert not [r for r in canary_relabel if r.get("action") == "drop"]
