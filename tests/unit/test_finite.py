"""One rule for every number from outside (agent.finite): NaN, +Inf and -Inf never pass a check.
Each entry point: the rule itself, the rollout analysis (not judged: the step holds), the
state machine fed such checks (never advances), promotion gates on hand-written and registry
metrics (an error naming registry, model, reference, metric and value), Git's numeric fields
(an error at file:line:field) and the stored rollout state (refused)."""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.errors import ValidationFailed
from agent.finite import finite, shown, within
from agent.registry import MlflowRegistry, ResolvedVersion
from agent.resolve import resolve_spec
from agent.rollout import REQUESTS, CheckResult, Query, RolloutState, judge, start, step
from agent.spec import Analysis, Canary, Gate, Model, ModelVersion, Rollout, gate_problems
from tests.unit.conftest import MODEL, errors_of, loads, repo, t

INF, NAN = math.inf, math.nan
NON_FINITE = [INF, -INF, NAN]


# --- the rule ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (1, 1.0), (0.5, 0.5), (-3, -3.0), (INF, None), (-INF, None), (NAN, None), (True, None), (None, None),
    ("1", None), (10 ** 400, None),
])
def test_finite(value: Any, expected: float | None) -> None:
    assert finite(value) == expected


@pytest.mark.parametrize(("value", "text"), [(INF, "+Inf"), (-INF, "-Inf"), (NAN, "NaN"), (0.05, "0.05"), (3.0, "3")])
def test_shown(value: float, text: str) -> None:
    assert shown(value) == text


@pytest.mark.parametrize(("value", "low", "high", "ok"), [
    (0.5, 0.0, 1.0, True), (1.5, 0.0, 1.0, False), (-0.5, 0.0, None, False), (7.0, None, None, True),
    (INF, 0.93, None, None), (-INF, None, 0.05, None), (NAN, 0.0, 1.0, None), (INF, None, None, None),
    (0.5, -INF, None, None), (0.5, None, NAN, None),
])
def test_within_never_passes_a_non_finite_number(value: float, low: float | None, high: float | None,
                                                 ok: bool | None) -> None:
    assert within(value, low, high) is ok


# --- the rollout analysis and the state machine -----------------------------------------------------

ERR = Query("error-rate", "e", None, 0.05, "rule")
SCORE = Query("score", "s", 0.8, None, "check")
REQ = Query(REQUESTS, "r", 50.0, None, "requests")


@pytest.mark.parametrize("query", [ERR, SCORE], ids=["max", "min"])
@pytest.mark.parametrize("value", NON_FINITE, ids=["+Inf", "-Inf", "NaN"])
def test_a_non_finite_value_is_not_judged(query: Query, value: float) -> None:
    [result] = judge([query], {query.name: value})
    assert result.ok is None
    assert result.message == f"{query.name} {shown(value)} is not a finite number: not judged"
    assert result.value == (None if math.isnan(value) else value)  # what is stored: JSON has no NaN


@pytest.mark.parametrize("value", NON_FINITE, ids=["+Inf", "-Inf", "NaN"])
def test_a_non_finite_request_count_judges_nothing(value: float) -> None:
    results = judge([ERR, REQ], {"error-rate": 0.01, REQUESTS: value})
    assert [r.ok for r in results] == [None, None]
    assert results[0].message == f"error-rate 0.01 not judged: requests {shown(value)} is not a finite number: not judged"


def test_an_answer_that_could_not_be_read_is_not_judged_with_its_reason() -> None:
    results = judge([ERR, SCORE, REQ], {"score": 0.9, REQUESTS: 100.0},
                    errors={"error-rate": "query returned 2 series, expected one"})
    assert results[0] == CheckResult("error-rate", None, None,
                                     "error-rate not judged: query returned 2 series, expected one")
    assert [r.ok for r in results[1:]] == [True, True]
    starved = judge([ERR, REQ], {"error-rate": 0.01}, errors={REQUESTS: "Prometheus did not answer within 5s"})
    assert [r.ok for r in starved] == [None, None]
    assert "requests not judged: Prometheus did not answer within 5s" in starved[1].message


def _model() -> Model:
    versions = {v: ModelVersion(v, f"s3://m/{v}") for v in ("1", "2")}
    rollout = Rollout(strategy="canary", steps=(10, 50, 100), interval="1m", interval_seconds=60.0,
                      analysis=Analysis(rules=("error-rate",), min_requests=5))
    return Model(name="scorer", namespace="ml", format="sklearn", versions=versions, stable="1", backend="kserve",
                 stage="production", canary=Canary("2", 10), rollout=rollout)


def test_the_probe_never_advances_a_rollout() -> None:
    """-Inf for the error rate, +Inf for the rest, over many intervals: step 1, 10%, always."""
    queries = [ERR, Query("p95", "p", None, 0.5, "check"), Query("auc", "a", 0.9, None, "check"), REQ]
    values = {"error-rate": -INF, "p95": INF, "auc": INF, REQUESTS: INF}
    model = _model()
    state: RolloutState | None = start(model, 0.0)
    for i in range(1, 30):
        transition = step(model, state, judge(queries, values), 60.0 * i)
        assert transition.kind == "waiting" and transition.traffic == 10
        state = transition.state
    assert state is not None and (state.phase, state.step, state.traffic) == ("Progressing", 0, 10)
    assert "not a finite number" in state.message


# --- promotion gates -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", NON_FINITE, ids=["+Inf", "-Inf", "NaN"])
@pytest.mark.parametrize("gate", [Gate("auc", min=0.93), Gate("auc", max=0.99), Gate("auc", 0.9, 0.99)],
                         ids=["min", "max", "both"])
def test_a_gate_never_passes_a_non_finite_value(value: float, gate: Gate) -> None:
    [problem] = gate_problems("canary", "2", {"auc": value}, [gate])
    assert problem == f"promotion gate: canary version '2' has auc={shown(value)}, not a finite number"


class _Registry:
    def __init__(self, **metrics: float) -> None:
        self.metrics = metrics

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None) -> ResolvedVersion:
        return ResolvedVersion(registry="mlflow", name=name, version="13", uri="s3://mlflow/13/model", run_id="abc",
                               digest=None, alias=alias, metrics=dict(self.metrics))


def _registry_spec() -> Any:
    body = MODEL.split("  versions:\n")[0] + (
        "  versions:\n"
        "    - version: \"1\"\n"
        "      uri: s3://models/scorer/1/\n"
        "      evaluation: {auc: 0.95, f1: 0.8}\n"
        "    - version: \"2\"\n"
        "      registry: {mlflow: {name: fraud-scorer, alias: champion}}\n"
        "  stable: \"1\"\n"
        "  canary: {version: \"2\", traffic: 10}\n"
        "  gates:\n"
        "    - {metric: auc, min: 0.93}\n"
        "    - {metric: f1, max: 0.99}\n")
    return loads(repo({"models/scorer.yaml": body}))


@pytest.mark.parametrize(("metrics", "bad"), [
    ({"auc": INF, "f1": 0.8}, "auc=+Inf"),
    ({"auc": 0.95, "f1": -INF}, "f1=-Inf"),
    ({"auc": NAN, "f1": 0.8}, "auc=NaN"),
])
def test_a_registry_metric_that_is_not_finite_is_an_error_naming_everything(metrics: dict[str, float],
                                                                            bad: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        resolve_spec(_registry_spec(), {"mlflow": _Registry(**metrics)})
    [error] = info.value.errors
    assert (error.file, error.field) == ("models/scorer.yaml", "spec.versions[1].registry")
    for part in ("MLflow", "fraud/scorer", "version '2'", "mlflow fraud-scorer@champion", "MLflow run abc", bad,
                 "not a finite number"):
        assert part in error.message, error.message


def test_an_ungated_metric_that_is_not_finite_is_dropped_not_used() -> None:
    spec, _ = resolve_spec(_registry_spec(), {"mlflow": _Registry(auc=0.95, f1=0.8, loss=INF)})
    assert spec.models[0].versions["2"].evaluation == {"auc": 0.95, "f1": 0.8}


# --- Git: every numeric field ----------------------------------------------------------------------

_ROLLOUT_MODEL = t("""
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
        - version: "2"
          uri: s3://models/scorer/2/
          evaluation: {auc: 0.96}
      stable: "1"
      canary: {version: "2"}
      gates:
        - {metric: auc, min: 0.9, max: 1.0}
      rollout:
        strategy: canary
        steps: [10, 100]
        analysis:
          rules: [lat]
          checks:
            - {name: score, query: "vector(1)", min: 0.5, max: 2}
    ---
    apiVersion: modelops.dev/v1alpha1
    kind: Monitor
    metadata: {name: mon, namespace: fraud}
    spec:
      model: scorer
      rules:
        - {name: lat, type: latency, threshold: 0.5, quantile: 0.95}
    """)

_CONFIG = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: RepositoryConfig
    metadata:
      name: test-repo
    spec:
      policy:
        allowedNamespaces: [fraud]
        pruneBudget: {maxFraction: 0.2}
    """)


def test_the_baseline_with_every_numeric_field_loads() -> None:
    spec = loads(repo({"models/scorer.yaml": _ROLLOUT_MODEL, "repo.yaml": _CONFIG}))
    assert spec.models[0].rollout is not None


@pytest.mark.parametrize(("file", "old", "field"), [
    ("models/scorer.yaml", "evaluation: {auc: 0.95}", "spec.versions[0].evaluation.auc"),
    ("models/scorer.yaml", "{metric: auc, min: 0.9,", "spec.gates[0].min"),
    ("models/scorer.yaml", "max: 1.0}", "spec.gates[0].max"),
    ("models/scorer.yaml", "min: 0.5", "spec.rollout.analysis.checks[0].min"),
    ("models/scorer.yaml", "max: 2}", "spec.rollout.analysis.checks[0].max"),
    ("models/scorer.yaml", "threshold: 0.5", "spec.rules[0].threshold"),
    ("models/scorer.yaml", "quantile: 0.95", "spec.rules[0].quantile"),
    ("repo.yaml", "maxFraction: 0.2", "spec.policy.pruneBudget.maxFraction"),
])
@pytest.mark.parametrize("literal", [".inf", "-.inf", ".nan", "1e999", "-1e999"])
def test_a_non_finite_number_in_git_is_an_error_at_its_field(file: str, old: str, field: str, literal: str) -> None:
    texts = {"models/scorer.yaml": _ROLLOUT_MODEL, "repo.yaml": _CONFIG}
    number = old.rsplit(": ", 1)[1].rstrip(",}")
    texts[file] = texts[file].replace(old, old.replace(number, literal, 1), 1)
    assert texts[file] != {"models/scorer.yaml": _ROLLOUT_MODEL, "repo.yaml": _CONFIG}[file]
    errors = errors_of(repo(texts))
    assert any(e.file == file and e.field == field and "is not a finite number" in e.message for e in errors), \
        "\n".join(map(str, errors))


# --- the stored rollout state -----------------------------------------------------------------------

def _stored(**fields: Any) -> dict[str, Any]:
    return {**start(_model(), 1000.0).to_json(), **fields}


@pytest.mark.parametrize("fields", [
    {"step_started": INF}, {"step_started": NAN}, {"step_started": 1e300}, {"step_started": -1},
    {"step_started": 10 ** 400},
    {"last_checks": [{"name": "x", "value": NAN, "ok": None, "message": ""}]},
    {"last_checks": [{"name": "x", "value": 10 ** 400, "ok": None, "message": ""}]},
    {"history": [{"at": INF, "to": "Progressing", "reason": ""}]},
])
def test_a_stored_state_with_a_number_that_is_not_finite_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="rollout state") as info:
        RolloutState.from_json(_stored(**fields))
    assert "None" not in str(info.value) and "{'" not in str(info.value)  # JSON, not Python, in the message


def test_stored_infinite_check_values_round_trip_as_strings() -> None:
    raw = _stored(last_checks=[{"name": "p95", "value": "+Inf", "ok": None, "message": "p95 +Inf not judged"}])
    assert RolloutState.from_json(raw).last_checks[0].value == INF


# --- the same through the MLflow client, against a fake registry answering Infinity ---------------------

class _FakeMlflow:
    """The three MLflow REST answers a resolution by alias reads; the run's auc as `auc` (JSON text)."""

    def __init__(self, auc: str) -> None:
        version = {"name": "fraud-scorer", "version": "13", "source": "s3://mlflow/13/model", "run_id": "abc",
                   "status": "READY", "aliases": ["champion"]}
        run = ('{"run": {"info": {"run_id": "abc", "status": "FINISHED"}, "data": {"metrics": ['
               '{"key": "auc", "value": ' + auc + ', "timestamp": 1, "step": 1}, '
               '{"key": "f1", "value": 0.8, "timestamp": 1, "step": 1}]}}}')
        routes = {"/registered-models/alias": json.dumps({"model_version": version}).encode(),
                  "/model-versions/get-download-uri": b'{"artifact_uri": "s3://mlflow/13/model"}',
                  "/runs/get": run.encode()}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path.removeprefix("/api/2.0/mlflow")
                body = routes.get(path, b'{"error_code": "ENDPOINT_NOT_FOUND"}')
                self.send_response(200 if path in routes else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(("auc", "shown_as"), [("Infinity", "auc=+Inf"), ("-Infinity", "auc=-Inf"),
                                               ("1e999", "auc=+Inf")])
def test_an_infinite_auc_from_mlflow_does_not_pass_min_0_93(auc: str, shown_as: str) -> None:
    fake = _FakeMlflow(auc)
    try:
        with pytest.raises(ValidationFailed) as info:
            resolve_spec(_registry_spec(), {"mlflow": MlflowRegistry(fake.url)})
    finally:
        fake.close()
    [error] = info.value.errors
    assert shown_as in error.message and "mlflow fraud-scorer@champion" in error.message, error.message
    assert "not a finite number" in error.message
