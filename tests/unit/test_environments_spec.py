"""Environments in the repo (kind Environment): overlays per model, validated per environment,
errors at the Environment's file:line:field; for_environment; a repo without any unchanged.
Pure: no cluster, no network."""

from __future__ import annotations

import textwrap

import pytest

from agent.desired import load_desired
from agent.render import render
from agent.spec import UnknownEnvironment, environment, environment_of_cluster, for_environment
from tests.unit.conftest import REPO_ROOT, assert_error, errors_of, loads, repo, t

EXAMPLE = REPO_ROOT / "examples" / "environments"

MODEL = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Model
    metadata:
      name: scorer
      namespace: fraud
    spec:
      format: sklearn
      runtime: sklearn-server
      versions:
        - version: "1"
          uri: s3://models/scorer/1/
          evaluation: {auc: 0.80}
        - version: "2"
          uri: s3://models/scorer/2/
          evaluation: {auc: 0.95}
      stable: "2"
      gates:
        - metric: auc
          min: 0.9
      replicas: 2
      env: {A: "1", B: "2"}
    """)


def env(name: str = "production", body: str = "") -> str:
    return t(f"""
        apiVersion: modelops.dev/v1alpha1
        kind: Environment
        metadata:
          name: {name}
        spec:
          clusters: [{name}-1]
        """) + textwrap.indent(t(body), "  ")


def test_a_repo_without_environments_has_none() -> None:
    spec = loads(repo())
    assert spec.environments == () and spec.environment == ""


def test_every_model_in_every_environment_with_its_overlay() -> None:
    spec = loads(repo({"models/scorer.yaml": MODEL, "envs/staging.yaml": env("staging"), "envs/prod.yaml": env(
        "production", """
        promotesFrom: staging
        soak: 1h
        models:
          scorer:
            autoscaling: {min: 2, max: 5}
            env: {B: "3"}
        """)}))
    staging, production = (environment(spec, n) for n in ("staging", "production"))
    assert staging.models == spec.models  # no overlay: the Model as declared
    scorer = production.model("fraud", "scorer")
    assert scorer is not None and scorer.replicas is None and scorer.autoscaling is not None
    assert scorer.env == {"A": "1", "B": "3"}  # merged key by key
    assert (production.promotes_from, production.soak_seconds) == ("staging", 3600.0)
    assert production.overlays == {"fraud/scorer": ("autoscaling", "env")}
    derived = for_environment(spec, "production")
    assert derived.config.name == "test-repo-production" and derived.environment == "production"
    assert derived.environments == () and derived.models == production.models
    isvc = next(o for o in render(derived) if o["kind"] == "InferenceService")
    assert isvc["metadata"]["labels"]["modelops.dev/target"] == "test-repo-production"
    assert environment_of_cluster(spec, "production-1").name == "production"


def _prod(body: str) -> dict[str, str | bytes]:
    text = t("""
        apiVersion: modelops.dev/v1alpha1
        kind: Environment
        metadata:
          name: production
        spec:
          clusters: [prod-1, prod-2]
        """) + textwrap.indent(t(body), "  ")
    return repo({"models/scorer.yaml": MODEL, "envs/prod.yaml": text})


def test_an_overlay_stable_version_the_model_does_not_list() -> None:
    [err] = errors_of(_prod("""
          models:
            scorer:
              stable: "7"
        """))
    assert_error(err, "envs/prod.yaml", 9, "spec.models.scorer.stable", "version '7' is not listed in spec.versions (1, 2)")


def test_a_gate_missed_in_one_environment_only() -> None:
    [err] = errors_of(_prod("""
          models:
            fraud/scorer:
              stable: "1"
        """))
    assert_error(err, "envs/prod.yaml", 9, "spec.models.fraud/scorer.stable",
                 "promotion gate: stable version '1' has auc=0.8, below the minimum 0.9")


def test_an_environment_naming_an_unknown_model() -> None:
    [err] = errors_of(_prod("""
          models:
            nosuch:
              replicas: 1
        """))
    assert_error(err, "envs/prod.yaml", 8, "spec.models.nosuch", "model 'nosuch' is not declared in the repo")


def test_the_models_own_problem_is_reported_once_for_the_model() -> None:
    broken = MODEL.replace('stable: "2"', 'stable: "9"')
    errs = errors_of({**_prod("""
          models:
            scorer:
              replicas: 1
        """), "models/scorer.yaml": broken})
    assert [(e.file, e.field) for e in errs] == [("models/scorer.yaml", "spec.stable")]


def test_a_canary_null_removes_the_models_canary() -> None:
    with_canary = MODEL.replace('stable: "2"', 'stable: "2"\n  canary: {version: "1", traffic: 10}').replace(
        "min: 0.9", "min: 0.5")
    spec = loads({**_prod("""
          models:
            scorer:
              canary: null
        """), "models/scorer.yaml": with_canary})
    assert spec.models[0].canary is not None
    scorer = environment(spec, "production").model("fraud", "scorer")
    assert scorer is not None and scorer.canary is None


def test_a_rollout_rule_no_monitor_declares() -> None:
    [err] = errors_of(_prod("""
          models:
            scorer:
              canary: {version: "2"}
              stable: "2"
              rollout: {strategy: canary, steps: [50, 100], analysis: {rules: [error-rate]}}
        """))
    assert err.file == "envs/prod.yaml" and err.field.startswith("spec.models.scorer.")


def test_a_cluster_in_two_environments_and_a_promotion_loop() -> None:
    errs = errors_of(repo({
        "a.yaml": env("staging", "promotesFrom: production\n").replace("[staging-1]", "[shared]"),
        "b.yaml": env("production", "promotesFrom: staging\n").replace("[production-1]", "[shared]"),
    }))
    text = "\n".join(str(e) for e in errs)
    assert "b.yaml:6: spec.clusters[0]: cluster 'shared' is already in environment 'production'" not in text
    assert "cluster 'shared' is already in environment" in text
    assert "promotion loops: production -> staging -> production" in text


def test_unknown_promotes_from_and_duplicate_names() -> None:
    errs = errors_of(repo({"a.yaml": env("staging", "promotesFrom: qa\n"), "b.yaml": env("staging")}))
    text = "\n".join(str(e) for e in errs)
    assert "a.yaml:7: spec.promotesFrom: environment 'qa' is not declared in the repo (staging)" in text
    assert "duplicate Environment 'staging' (first at a.yaml:1)" in text


def test_schema_errors_name_the_field() -> None:
    errs = errors_of(_prod("""
          models:
            scorer:
              replicas: 1
              autoscaling: {min: 1, max: 2}
              stable: 3
        """))
    assert {e.file for e in errs} == {"envs/prod.yaml"}
    assert any(e.field == "spec.models.scorer.stable" and e.line == 11 for e in errs), errs


def test_asking_for_an_environment_the_repo_lacks() -> None:
    with pytest.raises(UnknownEnvironment, match=r"environment 'qa' is not declared in the repo \(environments: production\)"):
        for_environment(loads(_prod("")), "qa")
    with pytest.raises(UnknownEnvironment, match="declares no environments"):
        for_environment(loads(repo()), "qa")


def test_the_example_repo() -> None:
    whole = load_desired(EXAMPLE, resolve=False, cached=False)
    assert [e.name for e in whole.spec.environments] == ["production", "staging"]
    assert whole.objects == []  # each environment renders its own
    prod = load_desired(EXAMPLE, environment="production", cached=False)
    assert prod.spec.config.name == "ml-fleet-production"
    versions = {o["metadata"]["name"]: o["metadata"]["labels"]["modelops.dev/version"]
                for o in prod.objects if o["kind"] == "InferenceService"}
    assert versions == {"fraud-scorer": "12", "ranker": "4"}
