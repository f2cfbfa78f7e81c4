"""Unit tests of agent.spec.load: parsing, validation errors (text, file:line, field path),
defaults and policy. In memory only: no cluster, no network, no files except the example repo."""

from __future__ import annotations

import pytest

from agent.errors import SpecError, ValidationFailed
from agent.render import render
from agent.source import DirectorySource, Snapshot, decrypt_snapshot
from agent.spec import load
from agent.spec._yaml import MAX_FILE_BYTES
from tests.unit.conftest import (
    CONFIG,
    EXAMPLE_REPO,
    MODEL,
    RUNTIME,
    assert_error,
    errors_of,
    loads,
    only_error,
    repo,
    t,
)

# --- the error type ---------------------------------------------------------------------------


def test_spec_error_prints_file_line_field_message() -> None:
    assert str(SpecError("a.yaml", 3, "spec.x", "bad")) == "a.yaml:3: spec.x: bad"
    assert str(SpecError("a.yaml", 1, "", "bad")) == "a.yaml:1: (document): bad"


def test_validation_failed_sorts_and_deduplicates() -> None:
    e1, e2 = SpecError("b.yaml", 1, "", "x"), SpecError("a.yaml", 9, "", "y")
    failed = ValidationFailed([e1, e2, e1])
    assert failed.errors == [e2, e1]
    assert str(failed) == "a.yaml:9: (document): y\nb.yaml:1: (document): x"


# --- a valid repo -----------------------------------------------------------------------------


def test_baseline_repo_loads() -> None:
    spec = loads(repo())
    assert [m.key for m in spec.models] == ["fraud/scorer"]
    assert [r.name for r in spec.runtimes] == ["sklearn-server"]
    assert spec.config.name == "test-repo"


def test_non_yaml_files_and_empty_documents_are_ignored() -> None:
    spec = loads(repo({
        "README.md": "not: [yaml",
        "models/notes.txt": "{{{",
        "empty.yaml": "",
        "comments.yml": "# only a comment\n---\n---\n",
    }))
    assert len(spec.models) == 1
    assert spec.manifests == ()


def test_multi_document_file() -> None:
    spec = loads({"all.yaml": CONFIG + "---\n" + RUNTIME + "---\n" + MODEL})
    assert len(spec.models) == 1 and len(spec.runtimes) == 1
    assert spec.models[0].location.file == "all.yaml"
    assert spec.models[0].location.line == 17  # 7 lines of config, ---, 7 of runtime, ---


def test_defaults_without_repository_config() -> None:
    spec = loads({
        "runtimes/r.yaml": RUNTIME,
        "m.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata: {name: m}
            spec:
              format: sklearn
              versions: [{version: "1", uri: "s3://b/m/1"}]
              stable: "1"
            """,
        "mon.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Monitor
            metadata: {name: mon}
            spec:
              model: m
              rules:
                - {name: lat, type: latency, threshold: 0.5}
                - {name: drift, type: drift, threshold: 0.2, feature: age}
            """,
    })
    model = spec.models[0]
    assert (model.namespace, model.backend, model.stage, model.runtime) == (
        "default", "kserve", "production", None)
    assert model.replicas is None and model.autoscaling is None and model.canary is None
    assert spec.config.name == "default" and spec.config.location is None
    lat, drift = spec.monitors[0].rules
    assert (lat.window, lat.for_, lat.severity, lat.action, lat.quantile) == (
        "5m", "5m", "warning", "alert", 0.95)
    assert (drift.feature, drift.method) == ("age", "psi")
    runtime = spec.runtimes[0]
    assert (runtime.protocol, runtime.port, runtime.metrics_path) == ("v2", 8080, "/metrics")


def test_repository_config_defaults_apply() -> None:
    spec = loads(repo({
        "repo.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: RepositoryConfig
            metadata: {name: ml}
            spec:
              defaults:
                namespace: fraud
                backend: kubernetes
                stage: staging
                resources: {cpu: 250m, memory: 1Gi}
                monitorFor: 10m
                monitorWindow: 1h
              policy:
                allowedKinds: [ConfigMap]
                prune: true
                pruneBudget: {maxCount: 3}
              metrics: {latencyHistogram: my_latency_seconds}
            """,
        "models/scorer.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata: {name: scorer}
            spec:
              format: sklearn
              runtime: sklearn-server
              resources: {memory: 2Gi}
              versions: [{version: "1", uri: "s3://b/m/1"}]
              stable: "1"
            """,
        "mon.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Monitor
            metadata: {name: mon}
            spec:
              model: scorer
              rules: [{name: lat, type: latency, threshold: 0.5, for: 1m}]
            """,
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
    }))
    model = spec.models[0]
    assert (model.namespace, model.backend, model.stage) == ("fraud", "kubernetes", "staging")
    # the model keeps its own resources; the renderer layers runtime and repo defaults under them
    assert (model.resources.cpu, model.resources.memory) == (None, "2Gi")
    deployment = next(o for o in render(spec) if o["kind"] == "Deployment")
    requests = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert requests == {"cpu": "250m", "memory": "2Gi"}
    rule = spec.monitors[0].rules[0]
    assert (spec.monitors[0].namespace, rule.window, rule.for_) == ("fraud", "1h", "1m")
    assert spec.manifests[0].namespace == "fraud"
    policy = spec.config.policy
    assert policy.prune and policy.allowed_kinds == ("ConfigMap",)
    assert (policy.prune_budget.max_count, policy.prune_budget.max_fraction) == (3, 0.2)
    assert spec.config.metrics.latency_histogram == "my_latency_seconds"
    assert spec.config.metrics.errors_total == "request_errors_total"


def test_excluded_paths_are_not_read() -> None:
    spec = loads(repo({
        "repo.yaml": CONFIG + "  exclude: ['drafts/*']\n",
        "drafts/broken.yaml": "key: [unclosed\n",
        "drafts/model.yaml": MODEL.replace("scorer", "draft"),
    }))
    assert [m.name for m in spec.models] == ["scorer"]


# --- YAML the loader refuses ------------------------------------------------------------------


def test_duplicate_key() -> None:
    err = only_error(repo({"models/scorer.yaml": """
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
              uri: s3://models/scorer/2/
          stable: "1"
        """}))
    assert_error(err, "models/scorer.yaml", 12, "spec.versions[0].uri",
                 "duplicate key 'uri' in the same mapping")


def test_duplicate_top_level_key() -> None:
    err = only_error(repo({"cm.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: a, namespace: fraud}
        kind: Secret
        """}))
    assert_error(err, "cm.yaml", 4, "kind", "duplicate key 'kind'")


@pytest.mark.parametrize(("text", "line", "field"), [
    # an alias of a mapping
    ("a: &base {x: 1}\nb: *base\n", 2, "b"),
    # an alias of a scalar
    ("a: &v hello\nb:\n  c: *v\n", 3, "b.c"),
    # an alias inside a sequence
    ("a: [&v x, *v]\n", 1, "a[1]"),
])
def test_yaml_aliases_are_refused(text: str, line: int, field: str) -> None:
    err = only_error({"x.yaml": "apiVersion: v1\nkind: ConfigMap\n" + text})
    assert_error(err, "x.yaml", line + 2, field, "YAML aliases (*name) are not allowed")


def test_alias_in_a_later_document_is_located_in_it() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n" \
           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: &n b}\ndata: {x: *n}\n"
    err = only_error({"x.yaml": text})
    assert_error(err, "x.yaml", 8, "data.x", "aliases")


def test_an_anchor_without_alias_is_harmless() -> None:
    spec = loads({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a}\n"})
    assert spec.manifests[0].name == "a"


def test_undefined_alias() -> None:
    err = only_error({"x.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: *nope\n"})
    assert_error(err, "x.yaml", 3, "", "invalid YAML: found undefined alias")


def test_merge_keys_are_refused() -> None:
    err = only_error({"x.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: cm
          <<: {namespace: fraud}
        """})
    assert_error(err, "x.yaml", 5, "metadata", "YAML merge keys (<<) are not allowed")


def test_merge_key_with_alias_is_refused_at_the_merge() -> None:
    err = only_error({"x.yaml": "apiVersion: v1\nkind: ConfigMap\nbase: &b {x: 1}\ndata:\n  <<: *b\n"})
    assert_error(err, "x.yaml", 5, "data", "merge keys")


def test_mapping_keys_must_be_scalars() -> None:
    err = only_error({"x.yaml": "apiVersion: v1\nkind: ConfigMap\ndata:\n  ? [a, b]\n  : c\n"})
    assert_error(err, "x.yaml", 4, "data", "mapping keys must be plain strings")


def test_document_with_too_many_nodes() -> None:
    from agent.spec._yaml import MAX_NODES_PER_DOCUMENT

    text = b"apiVersion: v1\nkind: ConfigMap\ndata: [" + b"0," * MAX_NODES_PER_DOCUMENT + b"]\n"
    assert len(text) < MAX_FILE_BYTES
    err = only_error({"x.yaml": text})
    # nodes counted: the document, two values, the list: item 199996 is node 200001
    assert_error(err, "x.yaml", 3, "data[199996]", f"document has more than {MAX_NODES_PER_DOCUMENT} nodes")


def test_non_utf8_bytes() -> None:
    err = only_error(repo({"bad.yaml": b"apiVersion: v1\nkind: ConfigMap\ndata: {a: caf\xe9}\n"}))
    assert_error(err, "bad.yaml", 3, "", "not valid UTF-8 (byte 0xe9 at offset 44)")
    assert str(err) == "bad.yaml:3: (document): not valid UTF-8 (byte 0xe9 at offset 44)"


def test_utf8_text_is_fine() -> None:
    spec = loads({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
                             "data: {greeting: 'grüß dich ✓'}\n".encode()})
    assert spec.manifests[0].body["data"]["greeting"] == "grüß dich ✓"


def test_file_over_the_size_limit() -> None:
    big = b"apiVersion: v1\nkind: ConfigMap\n#" + b"x" * MAX_FILE_BYTES + b"\n"
    err = only_error(repo({"big.yaml": big}))
    assert_error(err, "big.yaml", 1, "",
                 f"file is {len(big)} bytes, over the limit of {MAX_FILE_BYTES}")


def test_file_at_the_size_limit_is_read() -> None:
    head = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\n#"
    content = head + b"x" * (MAX_FILE_BYTES - len(head) - 1) + b"\n"
    assert len(content) == MAX_FILE_BYTES
    assert loads({"big.yaml": content}).manifests[0].name == "big"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("apiVersion: v1\nkind: ConfigMap\ndata: [a, b\n", 4, "did not find expected ',' or ']'"),
    ("apiVersion: v1\nkind: ConfigMap: x\n", 2, "mapping values are not allowed in this context"),
    ("apiVersion: v1\n  kind: ConfigMap\n", 2, "mapping values are not allowed"),
    ("apiVersion: v1\nkind: ConfigMap\ndata: {a: 'x}\n", 4, "found unexpected end of stream"),
    ("apiVersion: v1\nkind: ConfigMap\ndata:\n\ta: 1\n", 4, "found character that cannot start"),
    ("apiVersion: v1\nkind: ConfigMap\ndata: {a: \x00}\n", 3,
     "unacceptable character #x0000: control characters are not allowed"),
])
def test_invalid_yaml_syntax(text: str, line: int, message: str) -> None:
    err = only_error(repo({"bad.yaml": text}))
    assert_error(err, "bad.yaml", line, "", "invalid YAML: ")
    assert message in err.message


def test_documents_must_be_mappings() -> None:
    err = only_error({"list.yaml": "- a\n- b\n"})
    assert_error(err, "list.yaml", 1, "", "each YAML document must be a mapping")


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("kind: ConfigMap\nmetadata: {name: a}\n", 1, "apiVersion", "missing or empty apiVersion"),
    ("apiVersion: v1\nmetadata: {name: a}\n", 1, "kind", "missing or empty kind"),
    ("apiVersion: ''\nkind: ConfigMap\n", 1, "apiVersion", "missing or empty apiVersion"),
])
def test_apiversion_and_kind_are_required(text: str, line: int, field: str, message: str) -> None:
    assert_error(only_error({"x.yaml": text}), "x.yaml", line, field, message)


# --- our group: kinds and versions ------------------------------------------------------------


def test_unknown_kind_in_our_group() -> None:
    err = only_error(repo({"p.yaml": """
        apiVersion: modelops.dev/v1alpha1
        kind: Pipeline
        metadata: {name: p}
        """}))
    assert_error(err, "p.yaml", 2, "kind", "unknown kind 'Pipeline' for modelops.dev/v1alpha1")
    assert "known: Environment, Model, Monitor, RepositoryConfig, ServingRuntime" in err.message


def test_unsupported_version_of_our_group() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace("v1alpha1", "v2")}))
    assert_error(err, "models/scorer.yaml", 1, "apiVersion",
                 "unsupported version 'modelops.dev/v2' (supported: modelops.dev/v1alpha1)")


# --- schema errors ----------------------------------------------------------------------------


def _model_with(spec_lines: str) -> dict[str, str | bytes]:
    """BASE with the Model's spec extended by spec_lines (2-space indented, from line 13)."""
    return repo({"models/scorer.yaml": MODEL + spec_lines})


def test_schema_unknown_field() -> None:
    err = only_error(_model_with("  replica: 2\n"))
    assert_error(err, "models/scorer.yaml", 13, "spec.replica", "unknown field 'replica'")
    assert "(allowed: autoscaling, backend, canary," in err.message


def test_schema_unknown_field_in_metadata() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        "  namespace: fraud\n", "  namespace: fraud\n  lables: {a: b}\n")}))
    assert_error(err, "models/scorer.yaml", 6, "metadata.lables",
                 "unknown field 'lables' (allowed: annotations, labels, name, namespace)")


def test_schema_wrong_type() -> None:
    err = only_error(_model_with("  replicas: two\n"))
    assert_error(err, "models/scorer.yaml", 13, "spec.replicas", "'two' is a string, expected an integer")


def test_schema_unquoted_version_is_a_wrong_type() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace('- version: "1"', "- version: 1")}))
    assert_error(err, "models/scorer.yaml", 10, "spec.versions[0].version",
                 '1 is a number, expected a string (quote it: "1")')


def test_schema_bad_enum() -> None:
    err = only_error(_model_with("  backend: sagemaker\n"))
    assert_error(err, "models/scorer.yaml", 13, "spec.backend",
                 "'sagemaker' is not one of 'kserve', 'kubernetes'")


def test_schema_missing_required() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace('  stable: "1"\n', "")}))
    # a missing field is reported on the object that lacks it (the `spec:` line)
    assert_error(err, "models/scorer.yaml", 6, "spec", "missing required field 'stable'")


def test_schema_missing_required_in_list_item() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        "      uri: s3://models/scorer/1/\n", "")}))
    assert_error(err, "models/scorer.yaml", 10, "spec.versions[0]", "missing required field 'uri'")


@pytest.mark.parametrize("quantity", ["1core", "-1", "2 Gi", "1.5.0"])
def test_schema_bad_quantity(quantity: str) -> None:
    err = only_error(_model_with(f"  resources:\n    cpu: '{quantity}'\n"))
    assert_error(err, "models/scorer.yaml", 14, "spec.resources.cpu",
                 f"{quantity!r} is not valid: A Kubernetes resource quantity")


@pytest.mark.parametrize("quantity", ["500m", "2", "1.5", "4Gi", "512Mi", "1", "0.25"])
def test_schema_good_quantities(quantity: str) -> None:
    spec = loads(_model_with(f"  resources:\n    cpu: '{quantity}'\n    memory: 4Gi\n"))
    assert spec.models[0].resources.cpu == quantity


def test_schema_numeric_quantity() -> None:
    spec = loads(_model_with("  resources: {cpu: 2, memory: 0.5}\n"))
    assert (spec.models[0].resources.cpu, spec.models[0].resources.memory) == ("2", "0.5")


def test_schema_replicas_and_autoscaling_are_exclusive() -> None:
    err = only_error(_model_with("  replicas: 2\n  autoscaling: {min: 1, max: 4}\n"))
    assert_error(err, "models/scorer.yaml", 6, "spec",
                 "replicas and autoscaling are mutually exclusive")


def test_schema_pattern_of_a_digest() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        "      uri: s3://models/scorer/1/\n",
        "      uri: s3://models/scorer/1/\n      digest: sha256:abc\n")}))
    assert_error(err, "models/scorer.yaml", 12, "spec.versions[0].digest",
                 "'sha256:abc' must be 'sha256:' and 64 lowercase hex digits")


def test_schema_uri_scheme() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace("s3://", "ftp://")}))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[0].uri",
                 "'ftp://models/scorer/1/' must be a URI with the scheme s3, gs, azure, http, https, pvc, oci or hf")


def test_schema_runtime_takes_no_namespace() -> None:
    # ServingRuntimes are repo-wide: their metadata takes no namespace. An invalid runtime is
    # left out; the model that names it does not report it missing (the first cause only).
    errors = errors_of(repo({"runtimes/sklearn.yaml": RUNTIME.replace(
        "  name: sklearn-server\n", "  name: sklearn-server\n  namespace: fraud\n")}))
    assert len(errors) == 1
    assert_error(errors[0], "runtimes/sklearn.yaml", 5, "metadata.namespace",
                 "unknown field 'namespace' (allowed: annotations, labels, name)")


MONITOR = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Monitor
    metadata:
      name: scorer
      namespace: fraud
    spec:
      model: scorer
      rules:
    """)


def test_schema_monitor_rule_fields_depend_on_type() -> None:
    errors = errors_of(repo({"monitors/scorer.yaml": MONITOR + """\
                - name: latency
                  type: latency
                  threshold: 0.3
                  feature: amount
                - name: errors
                  type: errorRate
                  threshold: 5
                - name: drift
                  type: drift
                  threshold: 0.2
                - name: drift2
                  type: drift
                  feature: amount
                  threshold: 0.2
                  quantile: 0.9
                - name: bogus
                  type: latency
                  threshold: 1
                  severity: page
                  colour: red
        """}))
    got = [(e.line, e.field, e.message) for e in errors]
    assert got == [
        (12, "spec.rules[0].feature", "field not allowed here"),
        (15, "spec.rules[1].threshold", "5 is greater than the maximum of 1"),
        (16, "spec.rules[2]", "missing required field 'feature'"),
        (23, "spec.rules[3].quantile", "field not allowed here"),
        (27, "spec.rules[4].severity", "'page' is not one of 'info', 'warning', 'critical'"),
        (28, "spec.rules[4].colour", "unknown field 'colour' (allowed: action, description, "
             "feature, for, method, name, quantile, retrain, severity, threshold, type, window)"),
    ]
    assert {e.file for e in errors} == {"monitors/scorer.yaml"}


def test_schema_bad_duration() -> None:
    err = only_error(repo({"monitors/scorer.yaml": MONITOR + """\
                - {name: lat, type: latency, threshold: 1, window: 5 minutes}
        """}))
    assert_error(err, "monitors/scorer.yaml", 9, "spec.rules[0].window",
                 "'5 minutes' must be a Prometheus duration such as 30s, 5m or 1h30m")


def test_schema_error_in_repository_config() -> None:
    err = only_error(repo({"repo.yaml": CONFIG + "  policy2: {}\n"}))
    assert_error(err, "repo.yaml", 8, "spec.policy2", "unknown field 'policy2'")


def test_only_one_repository_config() -> None:
    err = only_error(repo({"zz.yaml": CONFIG.replace("test-repo", "other")}))
    assert_error(err, "zz.yaml", 2, "kind", "only one RepositoryConfig is allowed (first at repo.yaml:1)")


# --- references between objects ---------------------------------------------------------------


def test_reference_to_a_missing_runtime() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        "runtime: sklearn-server", "runtime: torchserve")}))
    assert_error(err, "models/scorer.yaml", 8, "spec.runtime",
                 "ServingRuntime 'torchserve' not found in the repo (sklearn-server)")


def test_runtime_must_serve_the_format() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace("format: sklearn", "format: onnx")}))
    assert_error(err, "models/scorer.yaml", 7, "spec.format",
                 "runtime 'sklearn-server' does not serve format 'onnx' (it serves sklearn)")


def test_kubernetes_backend_needs_a_runtime() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        "  runtime: sklearn-server\n", "  backend: kubernetes\n")}))
    # the field is absent: the error points at the start of the object that lacks it
    assert_error(err, "models/scorer.yaml", 7, "spec.runtime", "the kubernetes backend needs a runtime")


def test_monitor_of_a_missing_model() -> None:
    err = only_error(repo({"monitors/m.yaml": MONITOR.replace("model: scorer", "model: ranker") + """\
                - {name: lat, type: latency, threshold: 1}
        """}))
    assert_error(err, "monitors/m.yaml", 7, "spec.model", "Model 'ranker' not found in namespace 'fraud'")


def test_monitor_looks_in_its_own_namespace() -> None:
    err = only_error(repo({"monitors/m.yaml": MONITOR.replace("namespace: fraud", "namespace: recsys")
                           + "        - {name: lat, type: latency, threshold: 1}\n"}))
    assert_error(err, "monitors/m.yaml", 7, "spec.model", "Model 'scorer' not found in namespace 'recsys'")


def test_duplicate_rule_names() -> None:
    err = only_error(repo({"monitors/m.yaml": MONITOR + """\
                - {name: lat, type: latency, threshold: 1}
                - {name: lat, type: errorRate, threshold: 0.1}
        """}))
    assert_error(err, "monitors/m.yaml", 10, "spec.rules[1].name", "duplicate rule name 'lat'")


CANARY_MODEL = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Model
    metadata:
      name: scorer
      namespace: fraud
    spec:
      format: sklearn
      versions:
        - version: "12"
          uri: s3://models/scorer/12/
          evaluation: {auc: 0.95, latency_ms: 20}
        - version: "13"
          uri: s3://models/scorer/13/
          evaluation: {auc: 0.91}
      stable: "12"
      canary:
        version: "13"
        traffic: 10
    """)


def test_canary_loads() -> None:
    spec = loads(repo({"models/scorer.yaml": CANARY_MODEL}))
    model = spec.models[0]
    assert model.canary is not None and (model.canary.version, model.canary.traffic) == ("13", 10)
    assert model.versions["12"].evaluation == {"auc": 0.95, "latency_ms": 20.0}


def test_canary_version_not_in_versions() -> None:
    err = only_error(repo({"models/scorer.yaml": CANARY_MODEL.replace('version: "13"\n    traffic',
                                                                      'version: "14"\n    traffic')}))
    assert_error(err, "models/scorer.yaml", 17, "spec.canary.version",
                 "version '14' is not listed in spec.versions (12, 13)")


def test_stable_version_not_in_versions() -> None:
    err = only_error(repo({"models/scorer.yaml": CANARY_MODEL.replace('stable: "12"', 'stable: "11"')}))
    assert_error(err, "models/scorer.yaml", 15, "spec.stable",
                 "version '11' is not listed in spec.versions (12, 13)")


def test_canary_equal_to_stable() -> None:
    err = only_error(repo({"models/scorer.yaml": CANARY_MODEL.replace('stable: "12"', 'stable: "13"')}))
    assert_error(err, "models/scorer.yaml", 17, "spec.canary.version",
                 "canary version '13' is the stable version")


def test_canary_traffic_over_100() -> None:
    err = only_error(repo({"models/scorer.yaml": CANARY_MODEL.replace("traffic: 10", "traffic: 110")}))
    assert_error(err, "models/scorer.yaml", 18, "spec.canary.traffic",
                 "110 is greater than the maximum of 100")


def test_duplicate_versions() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace(
        '  stable: "1"\n', '    - version: "1"\n      uri: s3://models/scorer/1b/\n  stable: "1"\n')}))
    assert_error(err, "models/scorer.yaml", 12, "spec.versions[1].version", "duplicate version '1'")


def test_autoscaling_min_above_max() -> None:
    err = only_error(_model_with("  autoscaling: {min: 5, max: 2}\n"))
    assert_error(err, "models/scorer.yaml", 13, "spec.autoscaling.min",
                 "min (5) is greater than max (2)")


# --- promotion gates --------------------------------------------------------------------------


def test_promotion_gates_pass() -> None:
    spec = loads(repo({"models/scorer.yaml": CANARY_MODEL + "  gates: [{metric: auc, min: 0.9}]\n"}))
    assert spec.models[0].gates[0].min == 0.9


def test_promotion_gate_below_minimum_fails_the_canary() -> None:
    err = only_error(repo({"models/scorer.yaml": CANARY_MODEL
                            + "  gates:\n    - metric: auc\n      min: 0.93\n"}))
    assert_error(err, "models/scorer.yaml", 17, "spec.canary.version",
                 "promotion gate: canary version '13' has auc=0.91, below the minimum 0.93")


def test_promotion_gates_check_stable_and_canary() -> None:
    # 12 (stable) has too much latency_ms, 13 (canary) has no latency_ms recorded at all
    errors = errors_of(repo({"models/scorer.yaml": CANARY_MODEL
                             + "  gates:\n    - {metric: latency_ms, max: 15}\n"}))
    assert len(errors) == 2
    assert_error(errors[0], "models/scorer.yaml", 15, "spec.stable",
                 "promotion gate: stable version '12' has latency_ms=20, above the maximum 15")
    assert_error(errors[1], "models/scorer.yaml", 17, "spec.canary.version",
                 "promotion gate: canary version '13' has no recorded evaluation of 'latency_ms'")


def test_gates_ignore_versions_that_do_not_serve() -> None:
    text = CANARY_MODEL.replace("  canary:\n    version: \"13\"\n    traffic: 10\n", "")
    spec = loads(repo({"models/scorer.yaml": text + "  gates: [{metric: auc, min: 0.93}]\n"}))
    assert spec.models[0].canary is None


def test_gate_needs_a_threshold() -> None:
    err = only_error(_model_with("  gates: [{metric: auc}]\n"))
    assert_error(err, "models/scorer.yaml", 13, "spec.gates[0]", "a gate needs min, max or both")


# --- duplicates across files ------------------------------------------------------------------


def test_duplicate_model_across_files() -> None:
    err = only_error(repo({"models/zz-copy.yaml": MODEL}))
    assert_error(err, "models/zz-copy.yaml", 1, "metadata.name",
                 "duplicate Model 'fraud/scorer' (first declared at models/scorer.yaml:1)")


def test_same_model_name_in_two_namespaces_is_fine() -> None:
    spec = loads(repo({"models/other.yaml": MODEL.replace("namespace: fraud", "namespace: recsys")}))
    assert [m.key for m in spec.models] == ["fraud/scorer", "recsys/scorer"]


def test_duplicate_runtime() -> None:
    err = only_error(repo({"runtimes/again.yaml": RUNTIME}))
    assert_error(err, "runtimes/sklearn.yaml", 1, "metadata.name",
                 "duplicate ServingRuntime 'sklearn-server' (first declared at runtimes/again.yaml:1)")


def test_duplicate_raw_manifest_across_files() -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: fraud\n"
    err = only_error(repo({"infra/a.yaml": cm, "infra/b.yaml": "# the same object\n" + cm}))
    assert_error(err, "infra/b.yaml", 2, "metadata.name",
                 "duplicate object '/ConfigMap/fraud/settings' (first declared at infra/a.yaml:1)")


def test_same_raw_name_of_different_kinds_is_fine() -> None:
    spec = loads(repo({"infra/x.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: x, namespace: fraud}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: x, namespace: fraud}
        """}))
    assert sorted(m.kind for m in spec.manifests) == ["ConfigMap", "Secret"]


# --- policy -----------------------------------------------------------------------------------


def test_forbidden_namespace_of_a_model() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace("namespace: fraud", "namespace: kube-system")}))
    assert_error(err, "models/scorer.yaml", 5, "metadata.namespace",
                 "namespace 'kube-system' is not allowed by policy.allowedNamespaces "
                 "(fraud, recsys, team-*)")


def test_namespace_globs() -> None:
    spec = loads(repo({"models/scorer.yaml": MODEL.replace("namespace: fraud", "namespace: team-ads")}))
    assert spec.models[0].namespace == "team-ads"


def test_default_namespace_must_be_allowed_too() -> None:
    err = only_error(repo({"models/scorer.yaml": MODEL.replace("  namespace: fraud\n", "")}))
    assert_error(err, "models/scorer.yaml", 4, "metadata.namespace", "namespace 'default' is not allowed")


def test_forbidden_namespace_of_a_raw_manifest() -> None:
    err = only_error(repo({"infra/cm.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: cm
          namespace: kube-system
        """}))
    assert_error(err, "infra/cm.yaml", 5, "metadata.namespace", "namespace 'kube-system' is not allowed")


def test_forbidden_namespace_object() -> None:
    err = only_error(repo({"infra/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-public\n"}))
    assert_error(err, "infra/ns.yaml", 4, "metadata.name", "namespace 'kube-public' is not allowed")


def test_cluster_scoped_manifest_takes_no_namespace() -> None:
    err = only_error(repo({"infra/ns.yaml": "apiVersion: v1\nkind: Namespace\n"
                                            "metadata: {name: fraud, namespace: fraud}\n"}))
    assert_error(err, "infra/ns.yaml", 3, "metadata.namespace", "Namespace is cluster-scoped and takes no namespace")


def test_raw_manifest_namespace_must_be_a_string() -> None:
    err = only_error(repo({"infra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                                            "metadata:\n  name: cm\n  namespace: 42\n"}))
    assert_error(err, "infra/cm.yaml", 5, "metadata.namespace", "metadata.namespace must be a string")


def test_raw_manifest_needs_a_name() -> None:
    err = only_error(repo({"infra/cm.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"}))
    assert_error(err, "infra/cm.yaml", 1, "metadata.name", "missing metadata.name")


def test_secret_data_must_be_a_mapping() -> None:
    err = only_error(repo({"infra/s.yaml": "apiVersion: v1\nkind: Secret\n"
                                           "metadata: {name: s, namespace: fraud}\ndata: [a]\n"}))
    assert_error(err, "infra/s.yaml", 4, "data", "Secret data must be a mapping")


def test_forbidden_raw_kind() -> None:
    err = only_error(repo({"infra/deploy.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d, namespace: fraud}
        """}))
    assert_error(err, "infra/deploy.yaml", 2, "kind", "kind apps/Deployment is not allowed by policy.allowedKinds (")


def test_allowed_kinds_by_group() -> None:
    config = CONFIG + "    allowedKinds: [ConfigMap, rbac.authorization.k8s.io/Role]\n"
    role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: fraud}\n"
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: fraud}\n"
    assert len(loads(repo({"repo.yaml": config, "role.yaml": role})).manifests) == 1
    err = only_error(repo({"repo.yaml": config, "s.yaml": secret}))
    assert_error(err, "s.yaml", 2, "kind",
                 "kind Secret is not allowed by policy.allowedKinds (ConfigMap, rbac.authorization.k8s.io/Role)")


def test_raw_manifest_gets_the_default_namespace() -> None:
    spec = loads({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
                  "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"})
    by_kind = {m.kind: m for m in spec.manifests}
    assert by_kind["ConfigMap"].namespace == "default"
    assert by_kind["Namespace"].namespace is None


# --- everything at once -----------------------------------------------------------------------


def test_all_errors_are_reported_at_once_sorted() -> None:
    snapshot_problem = SpecError("link.yaml", 1, "", "symlink points outside the repository (/etc/passwd)")
    errors = errors_of(repo({
        "b/broken.yaml": "a: [\n",
        "a/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: fraud}\n",
        "models/scorer.yaml": MODEL.replace("runtime: sklearn-server", "runtime: nope") + "  replicas: -1\n",
        "models/other.yaml": MODEL.replace("name: scorer", "name: other").replace("fraud", "prod"),
        "monitors/m.yaml": MONITOR.replace("model: scorer", "model: ghost")
                           + "        - {name: lat, type: latency, threshold: 1}\n",
    }), problems=[snapshot_problem])
    lines = [str(e) for e in errors]
    assert lines == [
        "a/deploy.yaml:2: kind: kind apps/Deployment is not allowed by policy.allowedKinds "
        "(Namespace, ConfigMap, Secret, ServiceAccount, Service, rbac.authorization.k8s.io/Role, "
        "rbac.authorization.k8s.io/RoleBinding, networking.k8s.io/NetworkPolicy, policy/PodDisruptionBudget)",
        "b/broken.yaml:2: (document): invalid YAML: did not find expected node content",
        "link.yaml:1: (document): symlink points outside the repository (/etc/passwd)",
        "models/other.yaml:5: metadata.namespace: namespace 'prod' is not allowed by "
        "policy.allowedNamespaces (fraud, recsys, team-*)",
        "models/scorer.yaml:13: spec.replicas: -1 is less than the minimum of 0",
        "monitors/m.yaml:7: spec.model: Model 'ghost' not found in namespace 'fraud'",
    ]
    assert errors == sorted(errors)


def test_reference_errors_after_schema_errors_in_the_same_repo() -> None:
    # a schema error in one model does not hide a reference error in another
    errors = errors_of(repo({
        "models/a.yaml": MODEL.replace("name: scorer", "name: a") + "  color: red\n",
        "models/b.yaml": MODEL.replace("name: scorer", "name: b").replace("sklearn-server", "nope"),
    }))
    assert [(e.file, e.line, e.field) for e in errors] == [
        ("models/a.yaml", 13, "spec.color"),
        ("models/b.yaml", 8, "spec.runtime"),
    ]


# --- the example repo -------------------------------------------------------------------------


def test_example_repo_loads() -> None:
    snapshot = decrypt_snapshot(DirectorySource(EXAMPLE_REPO).snapshot())  # its Secret is SOPS-encrypted
    assert snapshot.problems == []
    spec = load(snapshot.files, snapshot.problems)
    assert (len(spec.models), len(spec.monitors), len(spec.runtimes), len(spec.manifests)) == (5, 3, 3, 5)
    assert spec.config.name == "ml-platform"
    assert {m.namespace for m in spec.models} == {"fraud", "recsys"}
    assert {m.backend for m in spec.models} == {"kserve", "kubernetes"}
    scorer = spec.model("fraud", "fraud-scorer")
    assert scorer is not None and scorer.canary is not None
    assert (scorer.stable, scorer.canary.version, scorer.canary.traffic) == ("12", "13", 10)
    assert scorer.gates
    for model in spec.models:
        for version in model.versions.values():
            assert version.uri.startswith(("s3://", "gs://"))
            assert version.digest is None or len(version.digest) == len("sha256:") + 64
    rules = [r for m in spec.monitors for r in m.rules]
    assert {r.type for r in rules} == {"latency", "errorRate", "drift"}
    assert "rollback" in {r.action for r in rules}
    kinds = sorted(m.kind for m in spec.manifests)
    assert kinds == ["ConfigMap", "Namespace", "Namespace", "Secret", "ServiceAccount"]
    assert {r.name for r in spec.runtimes} == {"sklearn-server", "xgboost-server", "fastapi-server"}


def test_example_repo_is_the_same_from_memory() -> None:
    raw = {p.relative_to(EXAMPLE_REPO).as_posix(): p.read_bytes()
           for p in EXAMPLE_REPO.rglob("*") if p.is_file()}
    assert load(decrypt_snapshot(Snapshot(files=raw)).files) == load(
        decrypt_snapshot(DirectorySource(EXAMPLE_REPO).snapshot()).files)


def test_bare_allowed_kind_covers_builtin_groups_only() -> None:
    knative = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: ksvc, namespace: fraud}\n"
    error = only_error(repo({"ksvc.yaml": knative}))
    assert_error(error, "ksvc.yaml", 2, "kind",
                 "kind serving.knative.dev/Service is not allowed by policy.allowedKinds")
    core = "apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: fraud}\n"
    assert any(m.kind == "Service" for m in loads(repo({"svc.yaml": core})).manifests)


def test_unquoted_dates_stay_strings_like_kubernetes_yaml() -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: fraud}\ndata: {since: 2024-01-31}\n"
    manifest = next(m for m in loads(repo({"cm.yaml": cm})).manifests if m.name == "cm")
    assert manifest.body["data"] == {"since": "2024-01-31"}


@pytest.mark.parametrize(("old", "new", "field", "text"), [
    ('version: "1"', 'version: "1.0."', "spec.versions[0].version",
     "'1.0.' must be at most 63 letters, digits, '.', '_' and '-', starting and ending with a letter or digit"),
    ("name: scorer", "name: 1scorer", "metadata.name",
     "'1scorer' must be lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"),
])
def test_names_and_versions_must_be_valid_kubernetes_names_and_labels(old: str, new: str, field: str,
                                                                      text: str) -> None:
    model = MODEL.replace(old, new).replace('stable: "1"', 'stable: "1.0."' if "1.0." in new else 'stable: "1"')
    errors = errors_of(repo({"models/scorer.yaml": model}))
    assert any(e.field == field and text in e.message for e in errors), errors


def _latency_monitor(fields: str) -> str:
    """A Monitor of the baseline model with one latency rule."""
    return t(f"""
        apiVersion: modelops.dev/v1alpha1
        kind: Monitor
        metadata: {{name: mon, namespace: fraud}}
        spec:
          model: scorer
          rules: [{{name: lat, type: latency, {fields}}}]
        """)


@pytest.mark.parametrize(("duration", "ok"), [("30m1h", False), ("1h30m", True), ("5ms", True), ("m", False)])
def test_durations_follow_prometheus_order(duration: str, ok: bool) -> None:
    monitor = _latency_monitor(f'threshold: 0.5, for: "{duration}"')
    if ok:
        assert loads(repo({"monitors/mon.yaml": monitor})).monitors[0].rules[0].for_ == duration
    else:
        errors = errors_of(repo({"monitors/mon.yaml": monitor}))
        assert [e.field for e in errors] == ["spec.rules[0].for"], errors


def test_exponent_floats_are_numbers() -> None:
    monitor = _latency_monitor("threshold: 5e-2")
    assert loads(repo({"monitors/mon.yaml": monitor})).monitors[0].rules[0].threshold == 0.05


def test_monitor_of_an_invalid_model_reports_only_the_model() -> None:
    monitor = _latency_monitor("threshold: 0.5")
    broken = MODEL.replace("runtime: sklearn-server", "runtime: missing-server")
    errors = errors_of(repo({"models/scorer.yaml": broken, "monitors/mon.yaml": monitor}))
    assert [e.field for e in errors] == ["spec.runtime"], errors


# --- hostile values: non-finite numbers, huge integers, tags, nesting (issue #7) ----------------


_GATED_CANARY = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Model
    metadata: {name: scorer, namespace: fraud}
    spec:
      format: sklearn
      runtime: sklearn-server
      versions:
        - version: "1"
          uri: s3://models/scorer/1/
          evaluation: {auc: 0.95}
        - {version: "2", uri: "s3://models/scorer/2/", evaluation: {auc: AUC}}
      stable: "1"
      canary: {version: "2", traffic: 10}
      gates: [{metric: auc, min: MIN}]
    """)


@pytest.mark.parametrize(("auc", "gate", "line", "field"), [
    (".nan", "0.93", 11, "spec.versions[1].evaluation.auc"),
    (".NaN", "0.93", 11, "spec.versions[1].evaluation.auc"),
    ("0.95", ".nan", 14, "spec.gates[0].min"),
    ("0.95", "-.inf", 14, "spec.gates[0].min"),
    (".inf", "0.93", 11, "spec.versions[1].evaluation.auc"),
    ("1e400", "0.93", 11, "spec.versions[1].evaluation.auc"),  # overflows to infinity
])
def test_non_finite_numbers_are_refused_in_models(auc: str, gate: str, line: int, field: str) -> None:
    assert loads(repo({"models/scorer.yaml": _GATED_CANARY.replace("AUC", "0.95").replace("MIN", "0.93")}))
    err = only_error(repo({"models/scorer.yaml": _GATED_CANARY.replace("AUC", auc).replace("MIN", gate)}))
    assert_error(err, "models/scorer.yaml", line, field, "is not a finite number")


@pytest.mark.parametrize("fields", ["threshold: .nan", "threshold: .inf", "threshold: 0.5, quantile: .nan"])
def test_non_finite_numbers_are_refused_in_monitors(fields: str) -> None:
    errors = errors_of(repo({"monitors/mon.yaml": _latency_monitor(fields)}))
    field = "spec.rules[0].quantile" if "quantile" in fields else "spec.rules[0].threshold"
    assert [(e.file, e.line, e.field) for e in errors] == [("monitors/mon.yaml", 6, field)], errors
    assert "is not a finite number" in errors[0].message


def test_non_finite_numbers_are_refused_in_runtimes_config_and_raw_manifests() -> None:
    runtime = RUNTIME + "  resources: {cpu: .inf}\n"
    config = CONFIG + "    pruneBudget: {maxFraction: .nan}\n"
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: fraud}\ndata: {x: .nan}\n"
    errors = errors_of(repo({"runtimes/sklearn.yaml": runtime, "repo.yaml": config, "cm.yaml": cm}))
    located = {(e.file, e.line, e.field) for e in errors if "is not a finite number" in e.message}
    assert located == {("runtimes/sklearn.yaml", 8, "spec.resources.cpu"),
                       ("repo.yaml", 8, "spec.policy.pruneBudget.maxFraction"),
                       ("cm.yaml", 4, "data.x")}, errors


def test_integers_beyond_64_bits_are_refused() -> None:
    model = _GATED_CANARY.replace("AUC", "9" * 400).replace("MIN", "0.93")
    err = only_error(repo({"models/scorer.yaml": model}))
    assert_error(err, "models/scorer.yaml", 11, "spec.versions[1].evaluation.auc", "integer out of range")
    edge = _GATED_CANARY.replace("AUC", str((1 << 63) - 1)).replace("MIN", "0.93")
    assert loads(repo({"models/scorer.yaml": edge}))


@pytest.mark.parametrize(("value", "message"), [
    ("!!binary aGVsbG8=", "unsupported YAML tag '!!binary'"),
    ("!!python/object:os.system ls", "unsupported YAML tag '!!python/object:os.system'"),
    ("!Ref other", "unsupported YAML tag '!Ref'"),
    ("!!int abc", "'abc' is not a valid !!int"),
    ("!!int ''", "'' is not a valid !!int"),
    ("!!float ''", "'' is not a valid !!float"),
    ("!!bool maybe", "'maybe' is not a valid !!bool"),
    ("!!float x", "'x' is not a valid !!float"),
    ("!!set {a, b}", "unsupported YAML tag '!!set'"),
    ("!!omap [{a: 1}]", "unsupported YAML tag '!!omap'"),
])
def test_yaml_tags_without_a_kubernetes_meaning_are_refused(value: str, message: str) -> None:
    cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: fraud}}\ndata:\n  x: {value}\n"
    assert_error(only_error(repo({"cm.yaml": cm})), "cm.yaml", 5, "data.x", message)


def test_mapping_keys_are_read_as_written() -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: fraud}\ndata: {1: a, true: b, !!int x: c}\n"
    manifest = next(m for m in loads(repo({"cm.yaml": cm})).manifests if m.name == "cm")
    assert manifest.body["data"] == {"1": "a", "true": "b", "x": "c"}


def test_deep_nesting_is_refused_without_a_traceback() -> None:
    model = MODEL + "  env: " + "{a: " * 300 + "1" + "}" * 300 + "\n"
    err = only_error(repo({"models/scorer.yaml": model}))
    assert_error(err, "models/scorer.yaml", 13, "spec.env.a", "document nests more than 100 levels deep")
    flow = "x: " + "[" * 900 + "]" * 900 + "\n"
    assert_error(only_error(repo({"deep.yaml": flow})), "deep.yaml", 1, "x[0][0]", "levels deep")


@pytest.mark.parametrize("name", ['"scorer\\n"', "|\n    scorer"])
def test_a_trailing_newline_does_not_pass_a_name_pattern(name: str) -> None:
    errors = errors_of(repo({"models/scorer.yaml": MODEL.replace("name: scorer", f"name: {name}")}))
    assert [(e.line, e.field) for e in errors] == [(4, "metadata.name")], errors


# --- raw manifests: what the API server would refuse is refused offline (issue #7 item 10) -------


def _cm(meta: str, kind: str = "ConfigMap", api: str = "v1") -> str:
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n{meta}"


@pytest.mark.parametrize(("manifest", "line", "field", "message"), [
    (_cm("  name: BadName\n  namespace: fraud\n"), 4, "metadata.name", "'BadName' is not a valid ConfigMap name: a DNS-1123 subdomain"),
    (_cm("  name: a_b\n  namespace: fraud\n"), 4, "metadata.name", "DNS-1123 subdomain"),
    (_cm(f"  name: {'a' * 254}\n  namespace: fraud\n"), 4, "metadata.name", "DNS-1123 subdomain"),
    (_cm("  name: 1svc\n  namespace: fraud\n", "Service"), 4, "metadata.name", "not a valid Service name: a DNS-1035 label"),
    (_cm("  name: a.b\n  namespace: fraud\n", "Service"), 4, "metadata.name", "DNS-1035 label"),
    (_cm("  name: team-a.b\n", "Namespace"), 4, "metadata.name", "not a valid Namespace name: a DNS-1123 label"),
    (_cm("  name: a/b\n  namespace: fraud\n", "Role", "rbac.authorization.k8s.io/v1"), 4, "metadata.name", "without '/'"),
    (_cm("  name: cm\n  namespace: Fraud\n"), 5, "metadata.namespace", "'Fraud' is not a valid namespace"),
    (_cm("  generateName: cm-\n  name: cm\n  namespace: fraud\n"), 4, "metadata.generateName", "generateName is not supported"),
    (_cm("  name: cm\n  namespace: fraud\n  labels: {Bad Key: x}\n"), 6, "metadata.labels.Bad Key", "key 'Bad Key'"),
    (_cm("  name: cm\n  namespace: fraud\n  labels: {a: -x}\n"), 6, "metadata.labels.a", "label value '-x'"),
    (_cm(f"  name: cm\n  namespace: fraud\n  labels: {{a: {'x' * 64}}}\n"), 6, "metadata.labels.a", "label value"),
    (_cm("  name: cm\n  namespace: fraud\n  labels: {a: 1}\n"), 6, "metadata.labels.a", "label values must be strings"),
    (_cm(f"  name: cm\n  namespace: fraud\n  labels: {{{'a' * 64}: x}}\n"), 6, "metadata.labels." + "a" * 64, "1-63"),
    (_cm(f"  name: cm\n  namespace: fraud\n  labels: {{{'a' * 254}/b: x}}\n"), 6, f"metadata.labels.{'a' * 254}/b", "prefix"),
    (_cm("  name: cm\n  namespace: fraud\n  labels: [a]\n"), 6, "metadata.labels", "must be a mapping"),
    (_cm("  name: cm\n  namespace: fraud\n  annotations: {example.com/: x}\n"), 6, "metadata.annotations.example.com/", "key"),
    (_cm("  name: cm\n  namespace: fraud\n  annotations: {a: true}\n"), 6, "metadata.annotations.a", "annotation values must be strings"),
    (_cm(f"  name: cm\n  namespace: fraud\n  annotations: {{a: {'x' * (256 * 1024)}}}\n"), 6, "metadata.annotations", "over the limit of 262144"),
    (_cm("  name: cm\n  namespace: fraud\n  resourceVersion: '12'\n"), 6, "metadata.resourceVersion", "set by the API server"),
    (_cm("  name: cm\n  namespace: fraud\n  uid: x\n"), 6, "metadata.uid", "set by the API server"),
    (_cm("  name: pc\n  namespace: fraud\n", "PriorityClass", "scheduling.k8s.io/v1"), 5, "metadata.namespace", "cluster-scoped"),
])
def test_raw_manifest_metadata_is_checked_offline(manifest: str, line: int, field: str, message: str) -> None:
    config = CONFIG + "    allowedKinds: [ConfigMap, Service, Namespace, rbac.authorization.k8s.io/Role, PriorityClass]\n"
    err = only_error(repo({"repo.yaml": config, "infra/cm.yaml": manifest}))
    assert_error(err, "infra/cm.yaml", line, field, message)


def test_valid_raw_manifest_metadata_passes() -> None:
    config = CONFIG + "    allowedKinds: [ConfigMap, Namespace, ClusterRole]\n"
    manifests = {
        "cm.yaml": _cm("  name: feature-store.v2\n  namespace: fraud\n  creationTimestamp: null\n"
                       "  labels: {app.kubernetes.io/name: x, empty: ''}\n"
                       "  annotations: {example.com/note: 'any text: at all', plain: '1'}\n"),
        "ns.yaml": _cm("  name: team-a\n", "Namespace"),
        "cr.yaml": _cm("  name: system:aggregate-to-view-models\n", "ClusterRole", "rbac.authorization.k8s.io/v1"),
    }
    manifests["empty-ns.yaml"] = _cm("  name: empty-ns\n  namespace: ''\n")
    spec = loads(repo({"repo.yaml": config.replace("allowedNamespaces: [", "allowedNamespaces: [default, "),
                       **manifests}))
    assert sorted(m.name for m in spec.manifests) == ["empty-ns", "feature-store.v2", "system:aggregate-to-view-models",
                                                      "team-a"]
    assert next(m for m in spec.manifests if m.name == "empty-ns").namespace == "default"


def test_our_kinds_check_annotation_keys_and_label_key_parts() -> None:
    model = MODEL.replace("  namespace: fraud\n", "  namespace: fraud\n  annotations: {'bad key': x}\n"
                                                  f"  labels: {{{'a' * 254}/b: x}}\n")
    errors = errors_of(repo({"models/scorer.yaml": model}))
    assert [(e.line, e.field) for e in errors] == [(6, "metadata.annotations.bad key"),
                                                   (7, f"metadata.labels.{'a' * 254}/b")], errors


_CRB = """
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRoleBinding
    metadata: {name: everyone-admin}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
    subjects: [{kind: Group, name: "system:authenticated", apiGroup: rbac.authorization.k8s.io}]
    """


def test_cluster_role_binding_is_refused_by_default_policy() -> None:
    err = only_error(repo({"infra/crb.yaml": _CRB}))
    assert_error(err, "infra/crb.yaml", 2, "kind", "kind rbac.authorization.k8s.io/ClusterRoleBinding is not allowed")


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_binding_to_cluster_admin_needs_an_explicit_policy(kind: str) -> None:
    binding = t(_CRB).replace("ClusterRoleBinding", kind)
    if kind == "RoleBinding":
        binding = binding.replace("{name: everyone-admin}", "{name: everyone-admin, namespace: fraud}")
    config = CONFIG + "    allowedKinds: [ClusterRoleBinding, RoleBinding]\n"
    err = only_error(repo({"repo.yaml": config, "infra/crb.yaml": binding}))
    assert_error(err, "infra/crb.yaml", 4, "roleRef.name", f"{kind} to the ClusterRole cluster-admin is refused")
    allowed = config + "    allowClusterAdmin: true\n"
    assert len(loads(repo({"repo.yaml": allowed, "infra/crb.yaml": binding})).manifests) == 1
    view = binding.replace("name: cluster-admin", "name: view")
    assert len(loads(repo({"repo.yaml": config, "infra/crb.yaml": view})).manifests) == 1


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_cluster_namespaces_need_to_be_named_exactly(namespace: str) -> None:
    model = MODEL.replace("namespace: fraud", f"namespace: {namespace}")
    no_policy = {"runtimes/sklearn.yaml": RUNTIME, "models/scorer.yaml": model}
    err = only_error(no_policy)
    assert_error(err, "models/scorer.yaml", 5, "metadata.namespace", f"namespace {namespace!r} belongs to the cluster")
    glob = CONFIG.replace('[fraud, recsys, "team-*"]', '["*"]')
    assert_error(only_error({**no_policy, "repo.yaml": glob}), "models/scorer.yaml", 5, "metadata.namespace",
                 "belongs to the cluster")
    exact = CONFIG.replace('"team-*"', f'"team-*", {namespace}')
    assert loads({**no_policy, "repo.yaml": exact}).models[0].namespace == namespace


def test_null_labels_and_annotations_of_a_raw_manifest_mean_none() -> None:
    manifest = _cm("  name: cm\n  namespace: fraud\n  labels: null\n  annotations:\n")
    spec = loads(repo({"infra/cm.yaml": manifest}))
    cm = next(m for m in spec.manifests if m.name == "cm")
    assert cm.body["metadata"] == {"name": "cm", "namespace": "fraud"}
    rendered = next(o for o in render(spec) if o["metadata"]["name"] == "cm")
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelops-agent"


@pytest.mark.parametrize(("api", "kind", "field", "message"), [
    ("apps/v1/x", "Deployment", "apiVersion", "'apps/v1/x' is not a valid apiVersion"),
    ("Apps/v1", "ConfigMap", "apiVersion", "not a valid apiVersion"),
    ("v1 ", "ConfigMap", "apiVersion", "not a valid apiVersion"),
    ("/v1", "ConfigMap", "apiVersion", "not a valid apiVersion"),
    ("v1", "Config Map", "kind", "'Config Map' is not a valid kind"),
    ("v1", "config-map", "kind", "not a valid kind"),
])
def test_raw_manifest_api_version_and_kind_must_be_well_formed(api: str, kind: str, field: str, message: str) -> None:
    err = only_error(repo({"infra/x.yaml": f"apiVersion: {api!r}\nkind: {kind!r}\nmetadata: {{name: x, namespace: fraud}}\n"}))
    assert_error(err, "infra/x.yaml", 1 if field == "apiVersion" else 2, field, message)


def test_each_loader_owns_its_reuse_of_the_previous_load() -> None:
    """Two loaders (the CLI's default and a controller's) never share parsed files."""
    from agent.spec import Loader
    from agent.spec import _loader as loader_module

    calls: list[str] = []
    original = loader_module.parse

    def counting(path: str, data: bytes) -> object:
        calls.append(path)
        return original(path, data)

    files = {"repo.yaml": b"apiVersion: modelops.dev/v1alpha1\nkind: RepositoryConfig\nmetadata: {name: t}\nspec: {}\n"}
    loader_module.parse = counting  # type: ignore[assignment]
    try:
        first, second = Loader(), Loader(pause_gc=False)
        first.load(files)
        first.load(files)  # reused: not parsed again
        second.load(files)  # its own state: parsed
        first.forget()
        first.load(files)
    finally:
        loader_module.parse = original  # type: ignore[assignment]
    assert calls == ["repo.yaml", "repo.yaml", "repo.yaml"]
