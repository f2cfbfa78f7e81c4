"""agent.plan and agent.output: object diff, changed fields, model summary, Secret redaction,
and the text/JSON/Markdown renderings of a Plan. Repos are built in memory and rendered for real."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import output
from agent.apply import tasks_for
from agent.plan import (
    REDACTED_PREFIX,
    Plan,
    build_plan,
    changed_paths,
    diff_objects,
    redact,
    secret_data_matches,
)
from agent.render import SPEC_HASH_ANNOTATION, object_key, render
from agent.spec import load

API = "modelops.dev/v1alpha1"

# --- building repos ------------------------------------------------------------------------


def runtime_doc(name: str = "mlserver", image: str = "seldonio/mlserver:1.6.1") -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": name},
            "spec": {"image": image, "formats": ["sklearn"], "port": 8080, "metricsPort": 8082}}


def model_doc(name: str, namespace: str, stable: str, *, canary: tuple[str, int] | None = None,
              backend: str = "kserve", versions: tuple[str, ...] = ("12", "13", "14"),
              replicas: int | None = 2, autoscaling: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "format": "sklearn", "runtime": "mlserver", "backend": backend,
        "versions": [{"version": v, "uri": f"s3://models/{name}/{v}"} for v in versions],
        "stable": stable,
    }
    if canary is not None:
        spec["canary"] = {"version": canary[0], "traffic": canary[1]}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    elif replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def monitor_doc(name: str, namespace: str, model: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Monitor", "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": model, "rules": rules}}


LATENCY = {"name": "latency", "type": "latency", "threshold": 0.5}
ERRORS = {"name": "errors", "type": "errorRate", "threshold": 0.05}
DRIFT = {"name": "amount-drift", "type": "drift", "feature": "amount", "threshold": 0.2}


def secret_doc(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", **fields}


def objects(*docs: dict[str, Any]) -> list[dict[str, Any]]:
    """Render a repo made of these documents (one file each)."""
    files = {f"doc{i:02d}.yaml": yaml.safe_dump(d).encode() for i, d in enumerate(docs)}
    return render(load(files))


def plan_of(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> Plan:
    return build_plan(diff_objects(after, before), base={"short": "base"}, revision={"short": "head"})


def model_lines(plan: Plan, key: str) -> list[str]:
    for m in plan.models:
        if m.key == key:
            return m.changes
    raise AssertionError(f"{key} not among {[m.key for m in plan.models]}")


def all_outputs(plan: Plan) -> dict[str, str]:
    return {
        "text": output.text(plan),
        "text-color": output.text(plan, color=True),
        "json": output.as_json(plan),
        "markdown": output.markdown(plan),
    }


RT = runtime_doc()

# --- diff_objects --------------------------------------------------------------------------


def _cm(name: str, data: dict[str, str], namespace: str = "fraud", api: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def test_diff_objects_actions() -> None:
    current = [_cm("same", {"a": "1"}), _cm("changed", {"a": "1"}), _cm("gone", {"a": "1"})]
    desired = [_cm("new", {"a": "1"}), _cm("changed", {"a": "2"}), _cm("same", {"a": "1"})]
    changes = diff_objects(desired, current)
    assert [(c.action, c.name) for c in changes] == [
        ("update", "changed"), ("delete", "gone"), ("create", "new"), ("unchanged", "same"),
    ]
    by_name = {c.name: c for c in changes}
    assert by_name["new"].before is None and by_name["new"].after == desired[0]
    assert by_name["gone"].after is None and by_name["gone"].before == current[2]
    tasks = {t.report.name: t for t in tasks_for(build_plan(changes), {object_key(o): o for o in desired},
                                                  {object_key(o): o for o in current})}
    assert tasks["gone"].desired is None and tasks["gone"].live == current[2]
    assert by_name["changed"].changed_fields == ["data.a"]
    assert by_name["same"].changed_fields == []
    assert all((c.api_version, c.kind, c.namespace) == ("v1", "ConfigMap", "fraud") for c in changes)
    plan = build_plan(changes)
    assert plan.counts() == {"create": 1, "update": 1, "delete": 1, "unchanged": 1}
    assert plan.has_changes
    assert [c.name for c in plan.changed] == ["changed", "gone", "new"]


def test_identity_is_group_kind_namespace_name() -> None:
    """Same name in another namespace or kind is another object; a new API version of the
    same group is the same object, updated."""
    deploy = {"apiVersion": "apps/v1beta2", "kind": "Deployment", "metadata": {"name": "x", "namespace": "a"}, "spec": {}}
    current = [_cm("x", {}), deploy]
    desired = [_cm("x", {}, namespace="b"), {**deploy, "apiVersion": "apps/v1"}]
    actions = {(c.action, c.kind, c.namespace) for c in diff_objects(desired, current)}
    assert actions == {("create", "ConfigMap", "b"), ("delete", "ConfigMap", "fraud"), ("update", "Deployment", "a")}


def test_identical_sets_have_no_changes() -> None:
    rendered = objects(RT, model_doc("scorer", "fraud", "12"), model_doc("ranker", "recsys", "12", backend="kubernetes"))
    plan = plan_of(rendered, copy.deepcopy(rendered))
    assert not plan.has_changes
    assert plan.changed == []
    assert all(c.action == "unchanged" for c in plan.objects)
    assert all(m.status == "unchanged" and m.changes == [] for m in plan.models)
    assert "no model changes" in output.text(plan)
    assert "No model changes." in output.markdown(plan)
    assert json.loads(output.as_json(plan))["changed"] is False


def test_changed_field_paths() -> None:
    before = {
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "a:1", "env": [{"name": "X", "value": "1"}]}]}}},
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "list": [1, 2],
    }
    after = copy.deepcopy(before)
    after["spec"]["replicas"] = 3
    after["spec"]["template"]["spec"]["containers"][0]["image"] = "a:2"
    after["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "2"
    del after["metadata"]["labels"]["b"]
    after["metadata"]["labels"]["c"] = "3"
    after["list"] = [1, 2, 3]  # a length change is reported at the list
    assert changed_paths(before, after) == [
        "list",
        "metadata.labels.b",
        "metadata.labels.c",
        "spec.replicas",
        "spec.template.spec.containers[0].env[0].value",
        "spec.template.spec.containers[0].image",
    ]
    assert changed_paths(before, before) == []
    assert changed_paths({"a": {"b": 1}}, {"a": "flat"}) == ["a"]


def test_rendered_update_fields_skip_the_hash_annotation() -> None:
    before = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", replicas=2))
    after = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", replicas=5))
    plan = plan_of(before, after)
    deployment = next(c for c in plan.changed if c.kind == "Deployment")
    assert deployment.changed_fields == ["spec.replicas"]
    assert f"metadata.annotations.{SPEC_HASH_ANNOTATION}" not in deployment.changed_fields
    assert [c.ref for c in plan.changed] == ["Deployment/recsys/ranker"]
    assert model_lines(plan, "recsys/ranker") == ["replicas 2 -> replicas 5", "objects 1 updated"]


# --- model-level summary -------------------------------------------------------------------


def test_summary_stable_version_change() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12"))
    after = objects(RT, model_doc("scorer", "fraud", "13"))
    plan = plan_of(before, after)
    assert model_lines(plan, "fraud/scorer") == ["version 12 -> 13", "objects 1 updated"]
    assert plan.models[0].status == "updated"


def test_summary_canary_started() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12"))
    after = objects(RT, model_doc("scorer", "fraud", "12", canary=("13", 10)))
    assert model_lines(plan_of(before, after), "fraud/scorer") == [
        "canary version none -> 13", "canary 0% -> 10%", "objects 1 updated",
    ]


def test_summary_canary_traffic_and_promotion() -> None:
    v12 = objects(RT, model_doc("scorer", "fraud", "12", canary=("13", 10)))
    v12_more = objects(RT, model_doc("scorer", "fraud", "12", canary=("13", 25)))
    assert model_lines(plan_of(v12, v12_more), "fraud/scorer") == ["canary 10% -> 25%", "objects 1 updated"]
    promoted = objects(RT, model_doc("scorer", "fraud", "13", canary=("14", 5)))
    assert model_lines(plan_of(v12_more, promoted), "fraud/scorer") == [
        "version 12 -> 13", "canary version 13 -> 14", "canary 25% -> 5%", "objects 1 updated",
    ]
    done = objects(RT, model_doc("scorer", "fraud", "13"))
    assert model_lines(plan_of(v12, done), "fraud/scorer") == [
        "version 12 -> 13", "canary version 13 -> none", "canary 10% -> 0%", "objects 1 updated",
    ]


def test_summary_kubernetes_canary_creates_a_deployment() -> None:
    before = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", replicas=4))
    after = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", replicas=4, canary=("13", 25)))
    plan = plan_of(before, after)
    assert model_lines(plan, "recsys/ranker") == [
        "canary version none -> 13", "canary 0% -> 25%", "objects 1 created, 2 updated",
    ]
    assert {(c.action, c.ref) for c in plan.changed} == {
        ("create", "Deployment/recsys/ranker-canary"),
        ("update", "Deployment/recsys/ranker"),
        ("update", "Service/recsys/ranker"),
    }
    stable = next(c for c in plan.changed if c.ref == "Deployment/recsys/ranker")
    assert "spec.replicas" in stable.changed_fields  # 4 -> 3, the canary takes one


def test_summary_autoscaling_change() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12", replicas=2))
    after = objects(RT, model_doc("scorer", "fraud", "12", autoscaling={"min": 2, "max": 8}))
    assert model_lines(plan_of(before, after), "fraud/scorer") == ["replicas 2 -> autoscaling 2-8", "objects 1 updated"]
    k_before = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", autoscaling={"min": 3, "max": 20}))
    k_after = objects(RT, model_doc("ranker", "recsys", "12", backend="kubernetes", autoscaling={"min": 3, "max": 30}))
    assert model_lines(plan_of(k_before, k_after), "recsys/ranker") == ["autoscaling 3-20 -> autoscaling 3-30", "objects 1 updated"]


def test_summary_backend_change() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12"))
    after = objects(RT, model_doc("scorer", "fraud", "12", backend="kubernetes"))
    lines = model_lines(plan_of(before, after), "fraud/scorer")
    assert lines == ["backend kserve -> kubernetes", "objects 2 created, 1 deleted"]


def test_summary_new_and_removed_model() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12"))
    after = objects(RT, model_doc("scorer", "fraud", "12"),
                    model_doc("ranker", "recsys", "12", backend="kubernetes", canary=("13", 50), replicas=4))
    plan = plan_of(before, after)
    assert model_lines(plan, "recsys/ranker") == [
        "new model: version 12, canary 13 at 50% (kubernetes, replicas 4)", "objects 3 created",
    ]
    assert {m.key: m.status for m in plan.models} == {"fraud/scorer": "unchanged", "recsys/ranker": "created"}
    back = plan_of(after, before)
    assert model_lines(back, "recsys/ranker") == ["model removed (was version 12)", "objects 3 deleted"]
    assert {m.key: m.status for m in back.models} == {"fraud/scorer": "unchanged", "recsys/ranker": "deleted"}
    kserve_new = plan_of([], objects(RT, model_doc("scorer", "fraud", "12", autoscaling={"min": 1, "max": 4})))
    assert model_lines(kserve_new, "fraud/scorer") == ["new model: version 12 (kserve, autoscaling 1-4)", "objects 1 created"]  # the ServingRuntime is shared, not the model's


def test_summary_monitor_rules() -> None:
    model = model_doc("scorer", "fraud", "12")
    before = objects(RT, model, monitor_doc("scorer-slo", "fraud", "scorer", [LATENCY]))
    after = objects(RT, model, monitor_doc("scorer-slo", "fraud", "scorer", [LATENCY, ERRORS, DRIFT]))
    plan = plan_of(before, after)
    assert model_lines(plan, "fraud/scorer") == [
        "monitor rules added: ScorerAmountDrift, ScorerErrors", "objects 1 updated",
    ]
    assert [c.ref for c in plan.changed] == ["PrometheusRule/fraud/scorer-slo"]
    back = plan_of(after, before)
    assert model_lines(back, "fraud/scorer") == ["monitor rules removed: ScorerAmountDrift, ScorerErrors", "objects 1 updated"]
    tighter = objects(RT, model, monitor_doc("scorer-slo", "fraud", "scorer", [{**LATENCY, "threshold": 0.3}]))
    assert model_lines(plan_of(before, tighter), "fraud/scorer") == ["monitor rules changed: ScorerLatency", "objects 1 updated"]
    # the first monitor of a model also adds its scrape config (a PodMonitor for KServe)
    first = plan_of(objects(RT, model), before)
    assert model_lines(first, "fraud/scorer") == ["monitor rules added: ScorerLatency", "objects 2 created"]
    assert {c.ref for c in first.changed} == {"PrometheusRule/fraud/scorer-slo", "PodMonitor/fraud/scorer"}


def test_objects_without_a_model_are_not_summarized() -> None:
    before = objects(RT, model_doc("scorer", "fraud", "12"))
    after = objects(RT, model_doc("scorer", "fraud", "12"),
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "fraud"}, "data": {}})
    plan = plan_of(before, after)
    assert [m.key for m in plan.models] == ["fraud/scorer"]
    assert [c.ref for c in plan.changed] == ["ConfigMap/fraud/cfg"]
    assert plan.changed[0].model is None


# --- secrets -------------------------------------------------------------------------------

OLD_SECRET = "correct-horse-battery-staple"
NEW_SECRET = "Tr0ub4dor&3-n3w-v4lue"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _assert_no_secret(texts: dict[str, str], *values: str) -> None:
    for fmt, text in texts.items():
        for value in values:
            for form in (value, _b64(value), _b64(value).rstrip("=")):
                assert form not in text, f"{fmt} output leaks {form!r}"


@pytest.mark.parametrize("field", ["stringData", "data"])
def test_changed_secret_is_redacted_everywhere(field: str) -> None:
    def encode(v: str) -> str:
        return _b64(v) if field == "data" else v

    model = model_doc("scorer", "fraud", "12")
    before = objects(RT, model, secret_doc("db", "fraud", **{field: {"password": encode(OLD_SECRET), "user": encode("svc")}}))
    after = objects(RT, model, secret_doc("db", "fraud", **{field: {"password": encode(NEW_SECRET), "user": encode("svc")}}))
    plan = plan_of(before, after)
    [secret] = plan.changed
    assert (secret.action, secret.ref) == ("update", "Secret/fraud/db")
    assert secret.changed_fields == ["data.password"]  # the key that changed, never its value
    assert secret.before is not None and secret.after is not None
    old_marker, new_marker = secret.before["data"]["password"], secret.after["data"]["password"]
    assert re.fullmatch(r"<redacted sha256:[0-9a-f]{8}>", old_marker)
    assert re.fullmatch(r"<redacted sha256:[0-9a-f]{8}>", new_marker)
    assert old_marker != new_marker
    assert secret.before["data"]["user"] == secret.after["data"]["user"]  # unchanged: same marker
    texts = all_outputs(plan)
    _assert_no_secret(texts, OLD_SECRET, NEW_SECRET)
    for fmt, text in texts.items():
        assert new_marker in text and old_marker in text, fmt
    assert "update" in texts["text"] and "Secret/fraud/db" in texts["text"]
    doc = json.loads(texts["json"])
    [obj] = [o for o in doc["objects"] if o["kind"] == "Secret"]
    assert obj["action"] == "update" and obj["changedFields"] == ["data.password"]
    assert REDACTED_PREFIX in obj["diff"]
    # apply still gets the real value, out of band (stringData is rendered as data)
    [task] = [t for t in tasks_for(plan, {object_key(o): o for o in after}, {}) if t.report is secret]
    assert task.desired is not None
    assert task.desired["data"]["password"] == _b64(NEW_SECRET)


def test_created_and_deleted_secrets_are_redacted() -> None:
    with_secret = objects(RT, secret_doc("api", "fraud", stringData={"key": OLD_SECRET}))
    without = objects(RT)
    for plan in (plan_of(without, with_secret), plan_of(with_secret, without)):
        [secret] = plan.changed
        assert secret.ref == "Secret/fraud/api"
        _assert_no_secret(all_outputs(plan), OLD_SECRET)
        assert REDACTED_PREFIX in output.text(plan)


def test_live_secret_last_applied_annotation_is_redacted() -> None:
    desired = objects(RT, secret_doc("api", "fraud", stringData={"key": NEW_SECRET}))
    live = copy.deepcopy(desired[0])
    live["data"] = {"key": _b64(OLD_SECRET)}
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "stringData": {"key": OLD_SECRET}})
    plan = plan_of([live], desired)
    _assert_no_secret(all_outputs(plan), OLD_SECRET, NEW_SECRET)
    assert plan.changed[0].changed_fields == ["data.key", "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration"]


def test_moving_a_value_between_data_and_stringdata_is_not_a_value_change() -> None:
    a = redact(secret_doc("s", "ns", stringData={"k": "v"}))
    b = redact(secret_doc("s", "ns", data={"k": _b64("v")}))
    assert a == b


# --- secret_data_matches: the no-request check compares Secrets by their bytes -------------


def _live_secret(data: dict[str, str], type_: str | None = "Opaque") -> dict[str, Any]:
    """A Secret as the API server returns it: data only (base64), type defaulted."""
    live: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "db", "namespace": "fraud", "resourceVersion": "7"},
                            "data": {k: _b64(v) for k, v in data.items()}}
    if type_ is not None:
        live["type"] = type_
    return live


@pytest.mark.parametrize("declared", [
    secret_doc("db", "fraud", stringData={"PASSWORD": OLD_SECRET, "USER": "svc"}),
    secret_doc("db", "fraud", data={"PASSWORD": _b64(OLD_SECRET), "USER": _b64("svc")}),
    secret_doc("db", "fraud", data={"PASSWORD": _b64("overridden"), "USER": _b64("svc")},
               stringData={"PASSWORD": OLD_SECRET}),
])
def test_secret_data_matches_by_effective_data(declared: dict[str, Any]) -> None:
    [rendered] = objects(declared)
    for want in (declared, rendered):
        assert secret_data_matches(want, _live_secret({"PASSWORD": OLD_SECRET, "USER": "svc"}))
        # kubectl patch secret db -p '{"stringData":{"PASSWORD":"changed"}}'
        assert not secret_data_matches(want, _live_secret({"PASSWORD": "changed", "USER": "svc"}))
        assert not secret_data_matches(want, _live_secret({"USER": "svc"}))  # a key removed
        assert not secret_data_matches(want, _live_secret({"PASSWORD": OLD_SECRET, "USER": "svc"}, "kubernetes.io/tls"))
        # a key someone else added is not ours: server-side apply would keep it, nothing to do
        assert secret_data_matches(want, _live_secret({"PASSWORD": OLD_SECRET, "USER": "svc", "EXTRA": "x"}))


def test_secret_data_matches_defaults_and_malformed_values() -> None:
    want = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "ünïcode"}}
    assert secret_data_matches(want, _live_secret({"k": "ünïcode"}))  # type omitted = Opaque
    assert secret_data_matches(want, _live_secret({"k": "ünïcode"}, type_=None))
    broken_live = _live_secret({"k": "ünïcode"})
    broken_live["data"]["k"] = "not base64!"
    assert not secret_data_matches(want, broken_live)
    assert not secret_data_matches({**want, "data": {"j": "%%%"}}, _live_secret({"k": "ünïcode", "j": "x"}))
    assert not secret_data_matches({**want, "stringData": {"k": 5}}, _live_secret({"k": "5"}))
    assert not secret_data_matches(want, _cm("s", {"k": "ünïcode"}))  # not a Secret at all
    empty = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    assert secret_data_matches(empty, _live_secret({}, type_=None))


def test_secret_data_matches_is_true_for_other_kinds() -> None:
    cm = _cm("cfg", {"k": "v"})
    assert secret_data_matches(cm, _cm("cfg", {"k": "other"}))
    custom = {"apiVersion": "example.com/v1", "kind": "Secret", "data": {"k": "v"}}
    assert secret_data_matches(custom, {**custom, "data": {"k": "w"}})


def test_redact_leaves_other_kinds_alone() -> None:
    cm = _cm("cfg", {"password": "not-a-secret"})
    assert redact(cm) is cm
    custom = {"apiVersion": "example.com/v1", "kind": "Secret", "data": {"k": "v"}}
    assert redact(custom) is custom


# --- output formats ------------------------------------------------------------------------


@pytest.fixture
def busy_plan() -> Plan:
    before = objects(RT, model_doc("scorer", "fraud", "12", canary=("13", 10)),
                     model_doc("old", "recsys", "12", backend="kubernetes"),
                     monitor_doc("scorer-slo", "fraud", "scorer", [LATENCY]))
    after = objects(RT, model_doc("scorer", "fraud", "13", canary=("14", 25)),
                    model_doc("new", "recsys", "14", backend="kubernetes"),
                    monitor_doc("scorer-slo", "fraud", "scorer", [LATENCY, DRIFT]))
    return plan_of(before, after)


def test_text_output(busy_plan: Plan) -> None:
    text = output.text(busy_plan)
    assert text.startswith("Comparing base -> head\n")
    assert "  fraud/scorer: version 12 -> 13; canary version 13 -> 14; canary 10% -> 25%; " \
           "monitor rules added: ScorerAmountDrift; objects 2 updated\n" in text
    assert "  recsys/new: new model: version 14 (kubernetes, replicas 2); objects 2 created\n" in text
    assert "  recsys/old: model removed (was version 12); objects 2 deleted\n" in text
    assert "Objects (2 to create, 2 to update, 2 to delete, 2 unchanged)" in text
    assert "  + create  Deployment/recsys/new\n" in text
    assert "  - delete  Deployment/recsys/old\n" in text
    assert re.search(r"  ~ update  InferenceService/fraud/scorer  \[.*spec\.predictor\.canaryTrafficPercent", text)
    assert "+++ desired/InferenceService/fraud/scorer" in text
    assert "\033[" not in text
    colored = output.text(busy_plan, color=True)
    assert "\033[32m" in colored and "\033[31m" in colored and "\033[0m" in colored
    assert re.sub(r"\033\[[0-9;]*m", "", colored) == text
    assert "+++" not in output.text(busy_plan, show_diff=False)


def test_json_output(busy_plan: Plan) -> None:
    doc = json.loads(output.as_json(busy_plan))
    assert (doc["apiVersion"], doc["kind"], doc["changed"]) == ("modelops.dev/v1alpha1", "Plan", True)
    assert doc["summary"] == {"create": 2, "update": 2, "delete": 2, "unchanged": 2}
    assert doc["base"] == {"short": "base"} and doc["revision"] == {"short": "head"}
    for obj in doc["objects"]:
        assert {"action", "apiVersion", "kind", "namespace", "name"} <= set(obj)
        assert obj["action"] in {"create", "update", "delete", "unchanged"}
        assert (obj["diff"] == "") == (obj["action"] == "unchanged")
    isvc = next(o for o in doc["objects"] if o["kind"] == "InferenceService")
    assert (isvc["action"], isvc["apiVersion"], isvc["namespace"], isvc["name"], isvc["model"]) == (
        "update", "serving.kserve.io/v1beta1", "fraud", "scorer", "fraud/scorer")
    assert "spec.predictor.canaryTrafficPercent" in isvc["changedFields"]
    models = {(m["namespace"], m["name"]): m for m in doc["models"]}
    assert set(models) == {("fraud", "scorer"), ("recsys", "new"), ("recsys", "old")}
    assert models[("fraud", "scorer")]["changes"][:3] == ["version 12 -> 13", "canary version 13 -> 14", "canary 10% -> 25%"]
    assert models[("recsys", "new")]["status"] == "created"
    assert models[("recsys", "old")]["status"] == "deleted"


def test_markdown_output(busy_plan: Plan) -> None:
    md = output.markdown(busy_plan)
    assert md.startswith("### Model changes `base` → `head`\n")
    assert "| model | status | changes |\n|---|---|---|\n" in md
    # ">" is written as an entity in cells (it renders as ">")
    assert "| `fraud/scorer` | updated | version 12 -&gt; 13<br>canary version 13 -&gt; 14<br>canary 10% -&gt; 25%<br>" in md
    assert "| `recsys/old` | deleted | model removed (was version 12)<br>objects 2 deleted |" in md
    assert "**Objects:** 2 to create, 2 to update, 2 to delete, 2 unchanged" in md
    blocks = re.findall(r"<details><summary>(\w+) <code>([^<]+)</code></summary>\n\n```diff\n(.*?)\n```\n</details>", md, re.S)
    assert len(blocks) == len(busy_plan.changed) == 6
    assert [(a, r) for a, r, _ in blocks] == [(c.action, c.ref) for c in busy_plan.changed]
    for action, ref, body in blocks:
        assert action in {"create", "update", "delete"}
        assert body.splitlines()[1] in (f"+++ desired/{ref}", "+++ /dev/null")
    # fences balance: every ```diff is closed
    assert md.count("```diff") == 6 and md.count("```") == 12


def test_markdown_diff_budget(busy_plan: Plan) -> None:
    md = output.markdown(busy_plan, max_diff_lines=10)
    assert "more lines" in md
    assert "# diff omitted (comment size limit); run `agent diff` locally" in md
    assert md.count("```diff") == md.count("```") // 2 == 6


_BASE_SHA, _HEAD_SHA = "1a2b3c4d5e6f" + "0" * 28, "5e6f7a8b9c0d" + "1" * 28


def _offline(plan: Plan, base_ref: str = "main", head_ref: str = "branch") -> Plan:
    """plan as `offline_plan` labels it: both sides are commits named by the user."""
    plan.base = {"commit": _BASE_SHA, "short": _BASE_SHA[:12], "ref": base_ref}
    plan.revision = {"commit": _HEAD_SHA, "short": _HEAD_SHA[:12], "ref": head_ref}
    return plan


def test_offline_diff_names_the_revisions_not_live(busy_plan: Plan) -> None:
    """issue #9: an offline diff (`--base main --revision branch`) compares two commits; its
    sides are the revisions in text, in the JSON `diff` field and in Markdown alike."""
    plan = _offline(busy_plan)
    isvc = "InferenceService/fraud/scorer"
    old, new = f"--- main (1a2b3c4d5e6f)/{isvc}", f"+++ branch (5e6f7a8b9c0d)/{isvc}"
    text = output.text(plan)
    doc = json.loads(output.as_json(plan))
    md = output.markdown(plan)
    json_diff = next(o["diff"] for o in doc["objects"] if o["kind"] == "InferenceService")
    for rendered in (text, json_diff, md):
        assert f"{old}\n{new}\n" in rendered + "\n"
        assert "live/" not in rendered and "desired/" not in rendered
    # created / deleted objects: /dev/null on the side without them
    assert "--- /dev/null\n+++ branch (5e6f7a8b9c0d)/Deployment/recsys/new\n" in text
    assert "--- main (1a2b3c4d5e6f)/Deployment/recsys/old\n+++ /dev/null\n" in text


def test_offline_diff_labels_by_sha_and_working_tree(busy_plan: Plan) -> None:
    """A side named by (a prefix of) its SHA is labelled by the short SHA alone; files on disk
    are the `working-tree`."""
    plan = _offline(busy_plan, base_ref=_BASE_SHA[:7])
    plan.revision = {"commit": "", "short": "working-tree"}
    text = output.text(plan)
    assert "--- 1a2b3c4d5e6f/InferenceService/fraud/scorer\n+++ working-tree/InferenceService/fraud/scorer\n" in text
    # a hostile ref cannot reach the terminal or the Markdown raw
    plan = _offline(busy_plan, head_ref="x\x1b[2J```")
    assert "\x1b" not in output.text(plan)
    md = output.markdown(plan)
    assert "+++ x\\x1b[2J``` (5e6f7a8b9c0d)/InferenceService/fraud/scorer" in md
    # the fence of every diff naming the ref outgrows its backticks (deletions do not name it)
    assert md.count("````diff") == sum(o.action != "delete" for o in plan.changed) == 4


def test_live_diff_keeps_live_and_desired(busy_plan: Plan) -> None:
    busy_plan.base = {"short": "live"}
    busy_plan.revision = {"commit": _HEAD_SHA, "short": _HEAD_SHA[:12], "author": "a", "message": "m"}
    for rendered in (output.text(busy_plan), output.as_json(busy_plan), output.markdown(busy_plan)):
        assert "live/InferenceService/fraud/scorer" in rendered
        assert "desired/InferenceService/fraud/scorer" in rendered
        assert "5e6f7a8b9c0d)/" not in rendered


def test_markdown_escapes_table_pipes() -> None:
    plan = plan_of([], objects(RT, model_doc("scorer", "fraud", "12")))
    plan.models[0].changes.append("a | b")
    md = output.markdown(plan)
    assert "a &#124; b" in md
    assert [line.count("|") for line in md.splitlines() if line.startswith("| ")] == [4, 4]


def test_secret_spec_hash_annotation_and_values_are_masked_with_a_keyed_hash() -> None:
    import hashlib

    from agent.plan import redact

    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "s", "namespace": "ns", "annotations": {"modelops.dev/spec-hash": "0123456789abcdef"}},
              "stringData": {"password": "hunter2"}}
    out = redact(secret)
    assert out["metadata"]["annotations"]["modelops.dev/spec-hash"].startswith("<redacted sha256:")
    marker = out["data"]["password"]
    assert marker == redact(secret)["data"]["password"]  # stable within a process
    assert hashlib.sha256(b"hunter2").hexdigest()[:8] not in marker  # not an unkeyed, guessable hash


def test_new_kserve_model_with_a_canary_warns_about_the_first_rollout() -> None:
    from agent.engine import load_desired
    from agent.plan import build_plan, diff_objects

    desired = load_desired(Path(__file__).resolve().parents[2] / "examples" / "model-repo").objects
    plan = build_plan(diff_objects(desired, []))
    fraud = next(m for m in plan.models if m.name == "fraud-scorer")
    assert fraud.changes[0].startswith("new model: version 12, canary 13 at 10% (kserve")
    assert any(c.startswith("warning: KServe splits traffic only after") for c in fraud.changes)
    assert not any(c.startswith("warning") for m in plan.models if m.name != "fraud-scorer" for c in m.changes)
