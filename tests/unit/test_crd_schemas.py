"""Every custom resource we render is valid against the REAL CRD of its version (KServe and
Prometheus-Operator, pinned in tools/k8s/crds.env), including the apiserver's unknown-field
pruning, and every PrometheusRule passes `promtool check rules`."""

from __future__ import annotations

import copy
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from _crds import REPO_ROOT, crd_dir, metadata_problems, problems, schema, unknown_fields, validator
from test_render import FIXTURES, fixture_files

from agent.engine import load_desired
from agent.render import ref, render
from agent.spec import load

CUSTOM_KINDS = {"InferenceService", "ServingRuntime", "PrometheusRule", "ServiceMonitor", "PodMonitor"}
EXAMPLE_REPO = REPO_ROOT / "examples" / "model-repo"
API = "modelops.dev/v1alpha1"


def _sweep_files() -> dict[str, bytes]:
    """Every option that changes a custom resource's shape: each KServe scale metric (cpu in
    both deployment modes) and protocol, with and without runtime/canary/GPU/formatVersion; metrics port equal to or
    apart from the serving port; every drift method; both backends monitored."""
    docs: list[dict[str, Any]] = []
    protocols = {"v1": "sk-v1", "v2": "sk-v2", "grpc-v2": "sk-grpc"}
    for protocol, name in protocols.items():
        spec: dict[str, Any] = {"image": f"kserve/sklearnserver:{protocol}", "formats": ["sklearn", "xgboost"],
                                "protocol": protocol, "port": 8080}
        if protocol == "v2":
            spec.update(metricsPort=9090, metricsPath="/stats", args=["--workers=2"], env={"A": "1"},
                        resources={"cpu": "1", "memory": "1Gi", "cpuLimit": "2", "gpu": 1})
        docs.append({"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": name}, "spec": spec})
    i = 0
    for metric in ("cpu", "memory", "concurrency", "rps"):
        for runtime in [*protocols.values(), None]:
            i += 1
            name = f"m{i}-{metric}"
            spec = {
                "format": "sklearn", "versions": [{"version": "1", "uri": f"s3://b/{name}/1"},
                                                  {"version": "2", "uri": f"s3://b/{name}/2",
                                                   "digest": "sha256:" + "ab" * 32}],
                "stable": "1", "autoscaling": {"min": i % 3, "max": 5, "metric": metric, "target": 10 * i},
            }
            if runtime:
                spec["runtime"] = runtime
            if i % 2:
                spec["canary"] = {"version": "2", "traffic": (i * 7) % 101}
            if i % 3 == 0:
                spec.update(formatVersion="1.5", serviceAccountName="reader", env={"X": "y"},
                            resources={"gpu": 2, "memory": "3Gi"})
            meta: dict[str, Any] = {"name": name, "namespace": f"ns{i % 2}"}
            if metric == "memory" or (metric == "cpu" and i % 2):  # KServe's Standard mode (an HPA)
                meta["annotations"] = {"serving.kserve.io/deploymentMode": "Standard"}
            docs.append({"apiVersion": API, "kind": "Model", "metadata": meta, "spec": spec})
            if i % 4 == 0:
                docs.append({"apiVersion": API, "kind": "Monitor",
                             "metadata": {"name": f"{name}-mon", "namespace": f"ns{i % 2}"},
                             "spec": {"model": name, "rules": [{"name": "lat", "type": "latency", "threshold": 1}]}})
    for j, (runtime, replicas) in enumerate([("sk-v1", 0), ("sk-v2", 3), ("sk-grpc", None)]):
        name = f"k{j}"
        spec = {"format": "xgboost", "runtime": runtime, "backend": "kubernetes",
                "versions": [{"version": "a", "uri": "pvc://models/a"}, {"version": "b", "uri": "oci://r/b"}],
                "stable": "a", "canary": {"version": "b", "traffic": 30}}
        if replicas is None:
            spec["autoscaling"] = {"min": 1, "max": 3, "metric": "rps", "target": 100}
        else:
            spec["replicas"] = replicas
        docs.append({"apiVersion": API, "kind": "Model", "metadata": {"name": name, "namespace": "kube"}, "spec": spec})
        rules = [{"name": f"drift-{method}", "type": "drift", "feature": f"f_{method}", "method": method,
                  "threshold": 0.5, "window": "2h", "for": "1h30m"}
                 for method in ("psi", "ks", "kl", "js", "wasserstein")]
        rules.append({"name": "errors", "type": "errorRate", "threshold": 0.001, "severity": "critical", "action": "rollback"})
        rules.append({"name": "p50", "type": "latency", "threshold": 0.05, "quantile": 0.5, "description": 'say "hi"'})
        # number literals PromQL must parse exactly: tiny, huge, many digits
        rules.append({"name": "tiny", "type": "errorRate", "threshold": 1e-07})
        rules.append({"name": "huge", "type": "latency", "threshold": 12345678, "quantile": 0.9999})
        rules.append({"name": "digits", "type": "drift", "feature": "f", "threshold": 0.1234567})
        docs.append({"apiVersion": API, "kind": "Monitor", "metadata": {"name": f"{name}-mon", "namespace": "kube",
                                                                         "labels": {"tier": "1"}},
                     "spec": {"model": name, "rules": rules}})
    return {f"sweep/{n:03d}.yaml": yaml.safe_dump(d).encode() for n, d in enumerate(docs)}


def _rendered() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(FIXTURES):
        out.extend((f"{name}:{ref(o)}", o) for o in render(load(fixture_files(name))))
    out.extend((f"sweep:{ref(o)}", o) for o in render(load(_sweep_files())))
    if (EXAMPLE_REPO / "repo.yaml").is_file():
        out.extend((f"example:{ref(o)}", o) for o in load_desired(EXAMPLE_REPO).objects)
    return out


RENDERED = _rendered()
CUSTOM = [(i, o) for i, o in RENDERED if o["kind"] in CUSTOM_KINDS]


def test_the_crds_are_the_pinned_ones() -> None:
    env = dict(line.split("=", 1) for line in (REPO_ROOT / "tools/k8s/crds.env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    complete = (crd_dir() / ".complete").read_text()
    assert f"kserve {env['KSERVE_VERSION']}" in complete
    assert f"prometheus-operator {env['PROMETHEUS_OPERATOR_VERSION']}" in complete


def test_every_custom_kind_is_covered() -> None:
    assert {o["kind"] for _, o in CUSTOM} == CUSTOM_KINDS
    assert (EXAMPLE_REPO / "repo.yaml").is_file(), "examples/model-repo is part of the check"
    assert {o["kind"] for i, o in CUSTOM if i.startswith("example:")} >= {"InferenceService", "PrometheusRule"}


@pytest.mark.parametrize(("ident", "obj"), CUSTOM, ids=[i for i, _ in CUSTOM])
def test_custom_resource_matches_its_crd(ident: str, obj: dict[str, Any]) -> None:
    assert problems(obj) == [], ident


@pytest.mark.parametrize(("ident", "obj"), RENDERED, ids=[i for i, _ in RENDERED])
def test_metadata_is_acceptable_to_the_apiserver(ident: str, obj: dict[str, Any]) -> None:
    """Names and labels of every rendered object, built-in kinds included."""
    assert metadata_problems(obj["metadata"]) == [], ident


# --- the checks can fail -------------------------------------------------------------------


def _one(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for _, o in CUSTOM if o["kind"] == kind))


@pytest.mark.parametrize(("kind", "mutate", "path"), [
    ("InferenceService", lambda o: o["spec"]["predictor"].update(canaryTraficPercent=10), "spec.predictor.canaryTraficPercent"),
    ("InferenceService", lambda o: o["spec"]["predictor"]["model"].update(storageURI="s3://x"), "spec.predictor.model.storageURI"),
    ("InferenceService", lambda o: o["metadata"].update(lables={"a": "b"}), "metadata.lables"),
    ("InferenceService", lambda o: o.update(sepc={}), "sepc"),
    ("ServingRuntime", lambda o: o["spec"]["containers"][0].update(imagee="x"), "spec.containers[0].imagee"),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(expression="up"), "spec.groups[0].rules[0].expression"),
    ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="1m"), "spec.endpoints[0].intervall"),
    ("PodMonitor", lambda o: o["spec"]["podMetricsEndpoints"][0]["relabelings"][0].update(target_label="x"),
     "spec.podMetricsEndpoints[0].relabelings[0].target_label"),
])
def test_misspelled_field_is_rejected(kind: str, mutate: Any, path: str) -> None:
    obj = _one(kind)
    assert problems(obj) == []
    mutate(obj)
    assert unknown_fields(obj, schema(obj["apiVersion"], kind)) == [path]
    assert f"{path}: unknown field" in problems(obj)


def test_jsonschema_alone_misses_unknown_fields() -> None:
    """Why the walker exists: the CRD schemas do not forbid additional properties."""
    obj = _one("InferenceService")
    obj["spec"]["predictor"]["canaryTraficPercent"] = 10
    assert list(validator(obj["apiVersion"], obj["kind"]).iter_errors(obj)) == []


@pytest.mark.parametrize(("kind", "mutate", "needle"), [
    ("InferenceService", lambda o: o["spec"]["predictor"].update(minReplicas="two"), "minReplicas"),
    ("InferenceService", lambda o: o["spec"]["predictor"].update(scaleMetric="gpu"), "scaleMetric"),
    ("InferenceService", lambda o: o["spec"]["predictor"]["model"].update(env=[{"value": "no name"}]), "name"),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
    ("ServiceMonitor", lambda o: o["spec"].pop("selector"), "selector"),
    ("ServingRuntime", lambda o: o["spec"]["containers"][0]["ports"][0].update(containerPort="http"), "containerPort"),
])
def test_schema_violation_is_rejected(kind: str, mutate: Any, needle: str) -> None:
    obj = _one(kind)
    mutate(obj)
    found = problems(obj)
    assert found and any(needle in p for p in found), found


def test_wrong_version_is_rejected() -> None:
    obj = _one("InferenceService")
    with pytest.raises(AssertionError, match="version v1alpha9 not in the CRD"):
        problems({**obj, "apiVersion": "serving.kserve.io/v1alpha9"})


def test_bad_label_value_is_rejected() -> None:
    meta = {"name": "x", "labels": {"modelops.dev/version": "1.0."}}
    assert metadata_problems(meta) == ["metadata.labels.modelops.dev/version: invalid label value '1.0.'"]
    assert metadata_problems({"name": "Upper"}) == ["metadata.name: invalid name 'Upper'"]


def test_walker_semantics() -> None:
    s = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "properties": {"known": {"type": "object", "properties": {"a": {}}}}},
                "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {}}}},
                "any": {"type": "object", "additionalProperties": True},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {}}}},
                "embedded": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object"}}},
                "leaf": {"type": "object"},
            }},
        },
    }
    ok = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {
        "free": {"whatever": {"deep": 1}, "known": {"a": 1}}, "map": {"k1": {"v": 1}}, "any": {"z": 1},
        "list": [{"n": 1}], "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
    }}
    assert unknown_fields(ok, s) == []
    bad = copy.deepcopy(ok)
    bad["spec"]["free"]["known"]["b"] = 1  # preserve-unknown does not extend into declared fields
    bad["spec"]["map"]["k1"]["w"] = 1
    bad["spec"]["list"].append({"m": 1})
    bad["spec"]["embedded"]["metadata"]["nam"] = "p"
    bad["spec"]["leaf"] = {"x": 1}  # type: object without properties: everything is pruned
    bad["status"] = {}
    assert unknown_fields(bad, s) == [
        "spec.free.known.b", "spec.map.k1.w", "spec.list[1].m", "spec.embedded.metadata.nam", "spec.leaf.x", "status",
    ]


# --- promtool ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (`make system`, "
                    "or `apt-get install -y prometheus`)")
    return path


def _check_rules(promtool: str, tmp_path: Path, groups: dict[str, Any], name: str = "rules.yaml") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(groups), encoding="utf-8")
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)


RULES = [(i, o) for i, o in CUSTOM if o["kind"] == "PrometheusRule"]


@pytest.mark.parametrize(("ident", "obj"), RULES, ids=[i for i, _ in RULES])
def test_prometheus_rule_passes_promtool(ident: str, obj: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    proc = _check_rules(promtool, tmp_path, obj["spec"])
    assert proc.returncode == 0, f"{ident}:\n{proc.stdout}\n{proc.stderr}"
    n = sum(len(g["rules"]) for g in obj["spec"]["groups"])
    assert f"SUCCESS: {n} rules found" in proc.stdout


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.update(expr="sum(rate(request_total{model=\"x\"}[5m]) >"), "parse error"),
    (lambda r: r.update(expr="rate(request_total[5 minutes])"), "parse error"),
    (lambda r: r.update(**{"for": "five minutes"}), "not a valid duration"),
])
def test_promtool_rejects_a_broken_rule(mutate: Any, message: str, promtool: str, tmp_path: Path) -> None:
    obj = _one("PrometheusRule")
    groups = copy.deepcopy(obj["spec"])
    assert _check_rules(promtool, tmp_path, groups, "good.yaml").returncode == 0
    mutate(groups["groups"][0]["rules"][0])
    proc = _check_rules(promtool, tmp_path, groups, "bad.yaml")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_alerts_fire_on_matching_series(promtool: str, tmp_path: Path) -> None:
    """`promtool test rules`: the three rule types fire when the model's series cross the
    threshold (as scraped, with the namespace/model labels our scrape configs set) and
    stay quiet for another model."""
    files = fixture_files("monitors")
    obj = next(o for o in render(load(files)) if o["kind"] == "PrometheusRule" and o["metadata"]["name"] == "fraud-detector-slo")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(obj["spec"]), encoding="utf-8")
    sel = 'namespace="fraud",model="fraud-detector"'
    other = 'namespace="fraud",model="other"'
    # 1 minute steps; latency: all requests in the 0.5s bucket (p99 ~0.5 > 0.25);
    # errors: 5% > 2%; drift: 0.4 > 0.3 from minute 21 for feature amount, method ks.
    tests = textwrap.dedent(f"""
        rule_files: [rules.yaml]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'model_request_duration_seconds_bucket{{{sel},le="0.1"}}'
                values: '0+0x30'
              - series: 'model_request_duration_seconds_bucket{{{sel},le="0.5"}}'
                values: '0+100x30'
              - series: 'model_request_duration_seconds_bucket{{{sel},le="+Inf"}}'
                values: '0+100x30'
              - series: 'request_total{{{sel}}}'
                values: '0+100x30'
              - series: 'request_errors_total{{{sel}}}'
                values: '0+5x30'
              - series: 'request_total{{{other}}}'
                values: '0+100x30'
              - series: 'request_errors_total{{{other}}}'
                values: '0+100x30'
              - series: 'model_feature_drift_score{{{sel},feature="amount",method="ks"}}'
                values: '0.1x20 0.4x50'
              - series: 'model_feature_drift_score{{{sel},feature="other",method="ks"}}'
                values: '0.9x70'
            alert_rule_test:
              - eval_time: 3m
                alertname: FraudDetectorP99Latency
                exp_alerts: []
              - eval_time: 20m
                alertname: FraudDetectorP99Latency
                exp_alerts:
                  - exp_labels: {{severity: critical, namespace: fraud, model: fraud-detector,
                                  monitor: fraud-detector-slo, rule_type: latency, action: rollback}}
                    exp_annotations:
                      summary: p99 latency of fraud/fraud-detector above 0.25s
                      description: p99 latency of fraud/fraud-detector above 0.25s for 5m (window 5m).
              - eval_time: 25m
                alertname: FraudDetectorErrorRate
                exp_alerts:
                  - exp_labels: {{severity: warning, namespace: fraud, model: fraud-detector,
                                  monitor: fraud-detector-slo, rule_type: errorRate, action: alert}}
                    exp_annotations:
                      summary: error rate of fraud/fraud-detector above 2%
                      description: error rate of fraud/fraud-detector above 2% for 10m (window 15m).
              - eval_time: 28m
                alertname: FraudDetectorAmountDrift
                exp_alerts: []
              - eval_time: 45m
                alertname: FraudDetectorAmountDrift
                exp_alerts:
                  - exp_labels: {{severity: info, namespace: fraud, model: fraud-detector,
                                  monitor: fraud-detector-slo, rule_type: drift, action: alert}}
                    exp_annotations:
                      summary: KS drift of feature amount of fraud/fraud-detector above 0.3
                      description: The distribution of transaction amounts moved.
    """)
    (tmp_path / "test.yaml").write_text(tests, encoding="utf-8")
    proc = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
