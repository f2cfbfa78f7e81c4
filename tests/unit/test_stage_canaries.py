"""agent apply and the controller hold a new KServe model's canary back until its stable
revision is Ready (agent.engine.stage_canaries), and say so on the plan (note_staged)."""

from __future__ import annotations

from typing import Any

from test_render_bluegreen import _model, _spec

from agent.cluster import Inventory
from agent.engine import Desired, Observed, note_staged, stage_canaries
from agent.plan import Plan
from agent.source import Revision


def _desired() -> Desired:
    spec = _spec(scorer=_model("scorer", "kserve", "replicas: 1", rollout="", canary='canary: {version: "2", traffic: 10}'))
    from agent.render import render

    return Desired(spec=spec, objects=render(spec), revision=Revision())


def _isvc(status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                           "metadata": {"name": "scorer", "namespace": "shop", "generation": 1,
                                        "labels": {"modelops.dev/version": "1"}}, "spec": {"predictor": {}}}
    if status is not None:
        obj["status"] = status
    return obj


def _observed(obj: dict[str, Any] | None) -> Observed:
    live = {} if obj is None else {("serving.kserve.io", "InferenceService", "shop", "scorer"): obj}
    return Observed(live=live, inventory=Inventory(target="bluegreen"))


def _canary_percent(desired: Desired) -> Any:
    isvc = next(o for o in desired.objects if o["kind"] == "InferenceService")
    return isvc["spec"]["predictor"].get("canaryTrafficPercent")


def test_a_new_model_is_applied_without_its_canary_and_the_plan_says_why() -> None:
    desired = _desired()
    applied, waiting = stage_canaries(desired, _observed(None))
    assert list(waiting) == ["shop/scorer"] and "waits for the stable revision" in waiting["shop/scorer"]
    assert _canary_percent(applied) is None and _canary_percent(desired) == 10
    plan = note_staged(Plan(objects=[], models=[]), desired, waiting)
    note = plan.rollouts["shop/scorer"]
    assert (note.phase, note.version) == ("Staged", "2")


def test_a_ready_stable_revision_lets_the_canary_in() -> None:
    ready = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}],
             "components": {"predictor": {"latestReadyRevision": "scorer-predictor-1",
                                          "latestCreatedRevision": "scorer-predictor-1"}}}
    desired = _desired()
    applied, waiting = stage_canaries(desired, _observed(_isvc(ready)))
    assert waiting == {} and applied is desired
