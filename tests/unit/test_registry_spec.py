"""Unit tests of registry references in the spec (issue #12): the shape of `registry:` on a
version entry and of `spec.registries` in repo.yaml, checked offline; gates deferred."""

from __future__ import annotations

from agent.spec import MlflowSettings, RegistryRef
from tests.unit.conftest import CONFIG, MODEL, assert_error, errors_of, loads, only_error, repo

_URI = "      uri: s3://models/scorer/1/\n"


def _version(entry: str, extra: str = "") -> dict[str, str | bytes]:
    """The baseline repo with version "1"'s uri replaced by `entry` (lines indented 6)."""
    return repo({"models/scorer.yaml": MODEL.replace(_URI, entry) + extra})


def test_mlflow_version_loads_without_uri() -> None:
    spec = loads(_version("      registry: {mlflow: {name: fraud-scorer, version: \"13\"}}\n"))
    v = spec.models[0].versions["1"]
    assert v.uri == "" and v.digest is None
    assert v.registry == RegistryRef(kind="mlflow", name="fraud-scorer", version="13")
    assert str(v.registry) == "mlflow fraud-scorer/13"
    assert v.location is not None and (v.location.file, v.location.line) == ("models/scorer.yaml", 11)


def test_mlflow_integer_version_and_alias() -> None:
    spec = loads(_version("      registry: {mlflow: {name: fraud-scorer, version: 13}}\n"))
    assert spec.models[0].versions["1"].registry == RegistryRef(kind="mlflow", name="fraud-scorer", version="13")
    spec = loads(_version("      registry:\n        mlflow: {name: fraud-scorer, alias: champion}\n"))
    ref = spec.models[0].versions["1"].registry
    assert ref == RegistryRef(kind="mlflow", name="fraud-scorer", alias="champion")
    assert ref is not None and str(ref) == "mlflow fraud-scorer@champion" and ref.selector == "alias=champion"


def test_gto_stage_and_version_with_repo() -> None:
    spec = loads(_version("      registry: {gto: {name: fraud-scorer, stage: prod}}\n"))
    ref = spec.models[0].versions["1"].registry
    assert ref == RegistryRef(kind="gto", name="fraud-scorer", stage="prod")
    assert ref is not None and str(ref) == "gto fraud-scorer#prod"
    spec = loads(_version("      registry: {gto: {name: fraud-scorer, version: v1.2.0, repo: 'https://git.example/ml.git'}}\n"))
    ref = spec.models[0].versions["1"].registry
    assert ref == RegistryRef(kind="gto", name="fraud-scorer", version="v1.2.0", repo="https://git.example/ml.git")
    assert str(ref) == "gto fraud-scorer@v1.2.0 (repo https://git.example/ml.git)"


def test_evaluation_allowed_beside_registry() -> None:
    spec = loads(_version("      registry: {mlflow: {name: s, alias: champion}}\n      evaluation: {auc: 0.95}\n"))
    assert spec.models[0].versions["1"].evaluation == {"auc": 0.95}


def test_uri_and_registry_are_exclusive() -> None:
    err = only_error(_version(_URI + "      registry: {mlflow: {name: s, version: \"1\"}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].uri", "uri and registry are exclusive")


def test_digest_not_allowed_with_registry() -> None:
    err = only_error(_version(f"      registry: {{mlflow: {{name: s, version: \"1\"}}}}\n      digest: sha256:{'a' * 64}\n"))
    assert_error(err, "models/scorer.yaml", 12, "spec.versions[0].digest", "digest and registry are exclusive")


def test_neither_uri_nor_registry() -> None:
    err = only_error(_version(""))
    assert_error(err, "models/scorer.yaml", 10, "spec.versions[0]", "missing required field 'uri'")
    assert "registry" in err.message


def test_mlflow_version_and_alias_are_exclusive() -> None:
    err = only_error(_version("      registry: {mlflow: {name: s, version: \"1\", alias: champion}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.mlflow",
                 "give exactly one of version or alias (both given)")
    err = only_error(_version("      registry: {mlflow: {name: s}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.mlflow",
                 "give exactly one of version or alias (neither given)")


def test_gto_needs_stage_or_version() -> None:
    err = only_error(_version("      registry: {gto: {name: s}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.gto",
                 "give exactly one of version or stage (neither given)")
    err = only_error(_version("      registry: {gto: {name: s, stage: prod, version: v1.0.0}}\n"))
    assert "both given" in err.message


def test_unknown_registry_kind() -> None:
    err = only_error(_version("      registry: {sagemaker: {name: s, version: \"1\"}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.sagemaker",
                 "unknown field 'sagemaker' (allowed: gto, mlflow)")


def test_two_registries_or_none() -> None:
    err = only_error(_version("      registry: {mlflow: {name: s, version: \"1\"}, gto: {name: s, stage: prod}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry",
                 "name exactly one registry: mlflow or gto (found mlflow and gto)")
    err = only_error(_version("      registry: {}\n"))
    assert "found none" in err.message


def test_alias_repo_only_where_they_belong() -> None:
    err = only_error(_version("      registry: {mlflow: {name: s, alias: a, repo: x}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.mlflow.repo", "unknown field 'repo'")
    err = only_error(_version("      registry: {gto: {name: s, alias: a}}\n"))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].registry.gto.alias", "unknown field 'alias'")


def test_bad_selectors_refused_by_the_schema() -> None:
    assert only_error(_version("      registry: {mlflow: {name: s, version: latest}}\n")).field == \
        "spec.versions[0].registry.mlflow.version"
    assert only_error(_version("      registry: {gto: {name: s, version: '1.2'}}\n")).field == \
        "spec.versions[0].registry.gto.version"
    assert only_error(_version("      registry: {gto: {name: Fraud, stage: prod}}\n")).field == \
        "spec.versions[0].registry.gto.name"


_GATES = "  gates:\n    - {metric: auc, min: 0.93}\n"


def test_gates_on_a_registry_version_are_deferred() -> None:
    spec = loads(_version("      registry: {mlflow: {name: s, alias: champion}}\n", _GATES))
    assert spec.models[0].deferred_gates == ("1",)


def test_hand_written_evaluation_of_a_registry_version_is_still_gated() -> None:
    # hand-written evaluation wins over the run's metrics, so a failing value fails now
    err = only_error(_version("      registry: {mlflow: {name: s, alias: champion}}\n      evaluation: {auc: 0.9}\n",
                              _GATES))
    assert_error(err, "models/scorer.yaml", 13, "spec.stable", "has auc=0.9, below the minimum 0.93")
    spec = loads(_version("      registry: {mlflow: {name: s, alias: champion}}\n      evaluation: {auc: 0.95}\n", _GATES))
    assert spec.models[0].deferred_gates == ()


def test_uri_version_gates_unchanged() -> None:
    err = only_error(_version(_URI, _GATES))
    assert "has no recorded evaluation of 'auc'" in err.message
    assert loads(repo()).models[0].deferred_gates == ()


# --- repo.yaml: spec.registries -----------------------------------------------------------------


def _config(extra: str) -> dict[str, str | bytes]:
    return repo({"repo.yaml": CONFIG + extra})


def test_registries_default() -> None:
    assert loads(repo()).config.registries.mlflow == MlflowSettings()


def test_registries_mlflow_settings() -> None:
    spec = loads(_config("  registries:\n    mlflow: {trackingUri: 'https://mlflow.example', tokenEnv: MLFLOW_TOKEN}\n"))
    assert spec.config.registries.mlflow == MlflowSettings(tracking_uri="https://mlflow.example", token_env="MLFLOW_TOKEN")
    spec = loads(_config("  registries:\n    mlflow: {tokenFile: /var/run/secrets/mlflow/token}\n"))
    assert spec.config.registries.mlflow.token_file == "/var/run/secrets/mlflow/token"
    assert spec.config.registries.mlflow.tracking_uri is None  # MLFLOW_TRACKING_URI, read when resolving


def test_registries_errors() -> None:
    err = only_error(_config("  registries:\n    mlflow: {tokenEnv: T, tokenFile: /t}\n"))
    assert_error(err, "repo.yaml", 9, "spec.registries.mlflow.tokenFile", "tokenEnv and tokenFile are exclusive")
    err = only_error(_config("  registries:\n    mlflow: {token: hunter2}\n"))
    assert_error(err, "repo.yaml", 9, "spec.registries.mlflow.token", "unknown field 'token'")
    errors = errors_of(_config("  registries:\n    mlflow: {trackingUri: 'mlflow.example'}\n"))
    assert errors[0].field == "spec.registries.mlflow.trackingUri"
