"""Issue #12's provenance of registry versions: the `modelops.dev/{stable,canary}-registry`
annotations on a model's primary objects (both backends) and the plan's summary line
`alias champion: 12 -> 13 (uri)` when the same alias or stage names another version.
Repos are built in memory, resolved with a fake registry and rendered for real."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
import yaml

from agent import output
from agent.plan import Plan, build_plan, diff_objects
from agent.registry import ResolvedVersion
from agent.render import (
    CANARY_REGISTRY_ANNOTATION,
    STABLE_REGISTRY_ANNOTATION,
    RegistryProvenance,
    parse_registry_annotation,
    render,
)
from agent.resolve import resolve_spec
from agent.spec import ModelVersion, RegistryRef, load

API = "modelops.dev/v1alpha1"
CONFIG = {"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": "reg"},
          "spec": {"policy": {"allowedNamespaces": ["fraud"]}}}
RUNTIME = {"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "mlserver"},
           "spec": {"image": "seldonio/mlserver:1.6.1", "formats": ["sklearn"]}}
CHAMPION = {"version": "champion", "registry": {"mlflow": {"name": "fraud-scorer", "alias": "champion"}}}
CHALLENGER = {"version": "challenger", "registry": {"mlflow": {"name": "fraud-scorer", "alias": "challenger"}}}
PROD = {"version": "prod", "registry": {"gto": {"name": "fraud-scorer", "stage": "prod"}}}


def pinned(n: str) -> dict[str, Any]:
    return {"version": f"v{n}", "registry": {"mlflow": {"name": "fraud-scorer", "version": n}}}


class FakeRegistry:
    """Answers every reference from a table: selector value ("champion", "13", "prod") -> version."""

    def __init__(self, kind: str, table: dict[str, str]) -> None:
        self.kind, self.table = kind, table

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None,
                stage: str | None = None, repo: str | None = None) -> ResolvedVersion:
        asked = version or alias or stage or ""
        got = self.table.get(asked, asked)
        return ResolvedVersion(registry=self.kind, name=name, version=got, uri=f"s3://mlflow/run-{got}/model",
                               run_id=f"run-{got}", digest=None, alias=alias or stage, metrics={})


def model_doc(versions: list[dict[str, Any]], stable: str, *, canary: str | None = None,
              backend: str = "kserve") -> dict[str, Any]:
    spec: dict[str, Any] = {"format": "sklearn", "runtime": "mlserver", "backend": backend, "replicas": 2,
                            "versions": versions, "stable": stable}
    if canary is not None:
        spec["canary"] = {"version": canary, "traffic": 10}
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": "fraud"}, "spec": spec}


def objects(model: dict[str, Any], mlflow: dict[str, str] | None = None,
            gto: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The repo with `model`, resolved against the tables (selector -> immutable version), rendered."""
    files = {f"doc{i}.yaml": yaml.safe_dump(d).encode() for i, d in enumerate((CONFIG, RUNTIME, model))}
    registries = {"mlflow": FakeRegistry("mlflow", mlflow or {}), "gto": FakeRegistry("gto", gto or {})}
    spec, _ = resolve_spec(load(files), registries)
    return render(spec)


def primary(objs: list[dict[str, Any]], kind: str = "InferenceService") -> dict[str, str]:
    obj = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == "scorer")
    return dict(obj["metadata"]["annotations"])


def plan_of(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> Plan:
    return build_plan(diff_objects(after, before), base={"short": "base"}, revision={"short": "head"})


def changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    (model,) = plan_of(before, after).models
    return model.changes


# --- the annotations -------------------------------------------------------------------------


def test_kserve_annotates_the_stable_and_the_canary_reference() -> None:
    ann = primary(objects(model_doc([pinned("12"), CHAMPION], "v12", canary="champion"), {"champion": "13"}))
    assert ann[STABLE_REGISTRY_ANNOTATION] == "mlflow fraud-scorer/12=12"
    assert ann[CANARY_REGISTRY_ANNOTATION] == "mlflow fraud-scorer@champion=13"


def test_kubernetes_annotates_the_service_not_the_workloads() -> None:
    objs = objects(model_doc([CHAMPION, pinned("14")], "champion", canary="v14", backend="kubernetes"),
                   {"champion": "13"})
    ann = primary(objs, "Service")
    assert ann[STABLE_REGISTRY_ANNOTATION] == "mlflow fraud-scorer@champion=13"
    assert ann[CANARY_REGISTRY_ANNOTATION] == "mlflow fraud-scorer/14=14"
    for o in objs:
        if o["kind"] != "Service":
            assert STABLE_REGISTRY_ANNOTATION not in (o["metadata"].get("annotations") or {}), o["kind"]


def test_gto_stage_of_another_repo() -> None:
    doc = {"version": "prod", "registry": {"gto": {"name": "fraud-scorer", "stage": "prod",
                                                   "repo": "git@git.example:ml/registry.git"}}}
    ann = primary(objects(model_doc([doc], "prod"), gto={"prod": "v1.1.0"}))
    text = ann[STABLE_REGISTRY_ANNOTATION]
    assert text == "gto fraud-scorer#prod (repo git@git.example:ml/registry.git)=v1.1.0"
    assert parse_registry_annotation(text) == RegistryProvenance(
        reference="gto fraud-scorer#prod (repo git@git.example:ml/registry.git)", selector="stage",
        value="prod", version="v1.1.0")


@pytest.mark.parametrize("backend", ["kserve", "kubernetes"])
def test_no_registry_no_annotation(backend: str) -> None:
    """A repo without registries renders as before (the golden files hold the bytes)."""
    model = model_doc([{"version": "12", "uri": "s3://m/12"}, {"version": "13", "uri": "s3://m/13"}], "12",
                      canary="13", backend=backend)
    for o in objects(model):
        ann = o["metadata"].get("annotations") or {}
        assert STABLE_REGISTRY_ANNOTATION not in ann and CANARY_REGISTRY_ANNOTATION not in ann


def test_an_unresolved_reference_has_no_annotation() -> None:
    files = {f"doc{i}.yaml": yaml.safe_dump(d).encode()
             for i, d in enumerate((CONFIG, RUNTIME, model_doc([CHAMPION], "champion")))}
    assert STABLE_REGISTRY_ANNOTATION not in primary(render(load(files)))


@pytest.mark.parametrize(("text", "expected"), [
    ("mlflow fraud-scorer@champion=13", ("mlflow fraud-scorer@champion", "alias", "champion", "13")),
    ("mlflow fraud-scorer/13=13", ("mlflow fraud-scorer/13", "version", "13", "13")),
    ("mlflow team/a@b=c@champion=4", ("mlflow team/a@b=c@champion", "alias", "champion", "4")),
    ("mlflow team@x/7=7", ("mlflow team@x/7", "version", "7", "7")),
    ("gto fraud-scorer#prod=v1.0.0", ("gto fraud-scorer#prod", "stage", "prod", "v1.0.0")),
    ("gto models:fraud-scorer@v1.2.0=v1.2.0", ("gto models:fraud-scorer@v1.2.0", "version", "v1.2.0", "v1.2.0")),
])
def test_parse(text: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_registry_annotation(text) == RegistryProvenance(*expected)


@pytest.mark.parametrize("text", [None, "", "13", "mlflow fraud-scorer@champion", "mlflow fraud-scorer@champion=",
                                  "sagemaker x@y=1", "mlflow @champion=1", "mlflow fraud-scorer=1",
                                  "mlflow fraud-scorer@=1"])
def test_parse_refuses_what_it_did_not_write(text: str | None) -> None:
    assert parse_registry_annotation(text) is None


def test_a_pickled_version_of_an_older_agent_reads_as_unresolved() -> None:
    """The desired cache keys its pickles by the code's hash; should one be read anyway, a
    ModelVersion without the field still reads (the class default)."""
    old = ModelVersion(version="1", uri="", registry=RegistryRef(kind="mlflow", name="m", alias="a"))
    state = pickle.loads(pickle.dumps(old))
    del state.__dict__["resolved"]
    assert state.resolved is None


# --- the summary line ------------------------------------------------------------------------


def test_a_moved_alias_is_a_summary_line_in_every_format() -> None:
    model = model_doc([CHAMPION], "champion")
    before, after = objects(model, {"champion": "12"}), objects(model, {"champion": "13"})
    assert changes(before, after) == ["alias champion: 12 -> 13 (s3://mlflow/run-13/model)", "objects 1 updated"]
    plan = plan_of(before, after)
    assert "alias champion: 12 -> 13 (s3://mlflow/run-13/model)" in output.text(plan)
    assert "alias champion: 12 -&gt; 13 (s3://mlflow/run-13/model)" in output.markdown(plan)  # a table cell
    (entry,) = json.loads(output.as_json(plan))["models"]
    assert entry["changes"][0] == "alias champion: 12 -> 13 (s3://mlflow/run-13/model)"


def test_a_moved_stage_is_a_summary_line() -> None:
    model = model_doc([PROD], "prod")
    before, after = objects(model, gto={"prod": "v1.0.0"}), objects(model, gto={"prod": "v1.1.0"})
    assert changes(before, after)[0] == "stage prod: v1.0.0 -> v1.1.0 (s3://mlflow/run-v1.1.0/model)"


def test_a_moved_canary_alias_on_the_kubernetes_backend() -> None:
    model = model_doc([pinned("12"), CHALLENGER], "v12", canary="challenger", backend="kubernetes")
    before, after = objects(model, {"challenger": "13"}), objects(model, {"challenger": "14"})
    lines = changes(before, after)
    assert "canary alias challenger: 13 -> 14 (s3://mlflow/run-14/model)" in lines
    assert not [line for line in lines if line.startswith(("alias", "version"))], lines


def test_kserve_stable_alias_behind_a_canary_has_no_uri_to_show() -> None:
    """KServe's spec carries the canary's artifact: the stable's is the previous revision's."""
    model = model_doc([CHAMPION, pinned("14")], "champion", canary="v14")
    before, after = objects(model, {"champion": "12"}), objects(model, {"champion": "13"})
    assert changes(before, after)[0] == "alias champion: 12 -> 13"


def test_the_same_version_is_no_line() -> None:
    model = model_doc([CHAMPION], "champion")
    assert changes(objects(model, {"champion": "12"}), objects(model, {"champion": "12"})) == []


def test_a_live_object_without_the_annotation_is_no_line() -> None:
    """Applied by an agent before the annotation existed: only the object change shows."""
    model = model_doc([CHAMPION], "champion")
    before = objects(model, {"champion": "12"})
    for o in before:
        (o["metadata"].get("annotations") or {}).pop(STABLE_REGISTRY_ANNOTATION, None)
    assert changes(before, objects(model, {"champion": "13"})) == ["objects 1 updated"]


def test_a_pinned_version_is_the_version_line_only() -> None:
    before = objects(model_doc([pinned("12"), pinned("13")], "v12"))
    after = objects(model_doc([pinned("12"), pinned("13")], "v13"))
    assert changes(before, after) == ["version v12 -> v13", "objects 1 updated"]


def test_a_repinned_entry_is_no_alias_line() -> None:
    """The same entry name now pinning another version: another reference, not a moved one."""
    before = objects(model_doc([{"version": "live", "registry": {"mlflow": {"name": "fraud-scorer", "version": "12"}}}],
                               "live"))
    after = objects(model_doc([{"version": "live", "registry": {"mlflow": {"name": "fraud-scorer", "version": "13"}}}],
                              "live"))
    assert changes(before, after) == ["objects 1 updated"]


def test_another_alias_is_no_alias_line() -> None:
    before = objects(model_doc([CHAMPION, CHALLENGER], "champion"), {"champion": "12", "challenger": "13"})
    after = objects(model_doc([CHAMPION, CHALLENGER], "challenger"), {"champion": "12", "challenger": "13"})
    assert changes(before, after) == ["version champion -> challenger", "objects 1 updated"]
