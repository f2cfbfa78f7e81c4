"""Rollout analysis (#11): the exact PromQL that judges a step for the new version only, and the
verdict on the numbers Prometheus returns."""

from __future__ import annotations

import math

import pytest

from agent.render import expression
from agent.rollout import REQUESTS, CheckResult, Query, analysis_queries, judge
from agent.spec import Analysis, AnalysisCheck, Canary, MetricNames, Model, ModelVersion, Monitor, MonitorRule, Rollout

METRICS = MetricNames()
LATENCY = MonitorRule("p95", "latency", 0.5, "5m", "5m", "warning", "alert")
ERRORS = MonitorRule("error-rate", "errorRate", 0.05, "10m", "5m", "critical", "rollback")
DRIFT = MonitorRule("drift", "drift", 0.2, "1h", "5m", "warning", "alert", feature="amount", method="psi")
MONITOR = Monitor("fraud-slo", "ml", "fraud", (LATENCY, ERRORS, DRIFT))
OTHER = Monitor("other-slo", "ml", "other", (MonitorRule("p99", "latency", 1.0, "5m", "5m", "warning", "alert"),))


def model(analysis: Analysis) -> Model:
    return Model(
        name="fraud", namespace="ml", format="sklearn",
        versions={v: ModelVersion(v, f"s3://m/{v}") for v in ("12", "13")}, stable="12", backend="kserve",
        stage="production", canary=Canary("13", 10),
        rollout=Rollout(strategy="canary", steps=(10, 100), interval="30s", interval_seconds=30.0, analysis=analysis),
    )


SEL = '{namespace="ml",model="fraud",version="13",track="canary"}'


def test_rule_queries_are_the_alert_values_for_the_new_version_over_the_step_window() -> None:
    queries = analysis_queries(model(Analysis(rules=("p95", "error-rate", "drift"))), [OTHER, MONITOR], METRICS,
                               "13", "canary", "30s")
    assert queries == [
        Query("p95", f"histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{SEL}[30s])))",
              None, 0.5, "rule"),
        Query("error-rate", f"sum(rate(request_errors_total{SEL}[30s])) / sum(rate(request_total{SEL}[30s]))",
              None, 0.05, "rule"),
        Query("drift", 'max(max_over_time(model_feature_drift_score{namespace="ml",model="fraud",feature="amount",'
                       'method="psi",version="13",track="canary"}[30s]))', None, 0.2, "rule"),
    ]


def test_the_alert_expression_is_the_value_and_the_comparison() -> None:
    for rule in MONITOR.rules:
        value = expression(MONITOR, rule, METRICS, compare=False)
        assert expression(MONITOR, rule, METRICS) == f"{value} > {rule.threshold:g}"
        assert "version=" not in value and f"[{rule.window}]" in value


def test_no_track_selects_by_version_only() -> None:
    [q] = analysis_queries(model(Analysis(rules=("error-rate",))), [MONITOR], METRICS, "13", "", "1m")
    assert q.expr == ('sum(rate(request_errors_total{namespace="ml",model="fraud",version="13"}[1m])) / '
                      'sum(rate(request_total{namespace="ml",model="fraud",version="13"}[1m]))')


def test_checks_fill_placeholders_but_not_promql_braces() -> None:
    check = AnalysisCheck(
        "score", 'avg(score{namespace="{namespace}",model="{model}",version="{version}",track="{track}"}[{interval}])'
                 ' / on() group_left {unknown} count({__name__="x"})',
        min=0.8, max=None,
    )
    [q] = analysis_queries(model(Analysis(checks=(check,))), [], METRICS, "13", "canary", "30s")
    assert q == Query(
        "score", 'avg(score{namespace="ml",model="fraud",version="13",track="canary"}[30s])'
                 ' / on() group_left {unknown} count({__name__="x"})',
        0.8, None, "check",
    )


def test_label_values_are_escaped() -> None:
    odd = 'v"1\\x'
    analysis = Analysis(rules=("error-rate",), checks=(AnalysisCheck("c", 'x{version="{version}"}', max=1),),
                        min_requests=5)
    queries = analysis_queries(model(analysis), [MONITOR], METRICS, odd, 'c"t', "30s")
    escaped = 'version="v\\"1\\\\x",track="c\\"t"'
    assert all(escaped in q.expr for q in queries if q.source != "check")
    assert queries[1].expr == 'x{version="v\\"1\\\\x"}'


def test_requests_query() -> None:
    [q] = analysis_queries(model(Analysis(min_requests=50)), [MONITOR], METRICS, "13", "canary", "30s")
    assert q == Query(REQUESTS, f"sum(increase(request_total{SEL}[30s]))", 50.0, None, "requests")
    assert analysis_queries(model(Analysis(min_requests=0)), [MONITOR], METRICS, "13", "canary", "30s") == []


def test_custom_metric_names_are_used() -> None:
    metrics = MetricNames(requests_total="reqs", errors_total="errs")
    [e, r] = analysis_queries(model(Analysis(rules=("error-rate",), min_requests=1)), [MONITOR], metrics,
                              "13", "canary", "30s")
    assert e.expr == f"sum(rate(errs{SEL}[30s])) / sum(rate(reqs{SEL}[30s]))"
    assert r.expr == f"sum(increase(reqs{SEL}[30s]))"


def test_a_model_without_rollout_has_no_queries() -> None:
    m = model(Analysis(rules=("p95",)))
    m = Model(**{**m.__dict__, "rollout": None})
    assert analysis_queries(m, [MONITOR], METRICS, "13", "canary", "30s") == []


def test_a_rule_of_another_model_or_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="'p99'"):
        analysis_queries(model(Analysis(rules=("p99",))), [MONITOR, OTHER], METRICS, "13", "canary", "30s")


def test_duplicate_names_are_refused() -> None:
    analysis = Analysis(rules=("p95",), checks=(AnalysisCheck("p95", "vector(1)", max=1),))
    with pytest.raises(ValueError, match="two analysis queries are named 'p95'"):
        analysis_queries(model(analysis), [MONITOR], METRICS, "13", "canary", "30s")


# --- judge -----------------------------------------------------------------------------------

ERR_Q = Query("error-rate", "e", None, 0.05, "rule")
SCORE_Q = Query("score", "s", 0.8, 1.0, "check")
REQ_Q = Query(REQUESTS, "r", 50.0, None, "requests")


@pytest.mark.parametrize(("query", "value", "ok", "message"), [
    (ERR_Q, 0.12, False, "error-rate 0.12 > max 0.05"),
    (ERR_Q, 0.05, True, "error-rate 0.05 ok (max 0.05)"),
    (ERR_Q, None, None, "error-rate: no data (waiting for data)"),
    (ERR_Q, math.nan, None, "error-rate NaN is not a finite number: not judged"),
    (ERR_Q, math.inf, None, "error-rate +Inf is not a finite number: not judged"),
    (SCORE_Q, 0.5, False, "score 0.5 < min 0.8"),
    (SCORE_Q, 1.5, False, "score 1.5 > max 1"),
    (SCORE_Q, 0.9, True, "score 0.9 ok (min 0.8, max 1)"),
    (Query("x", "x", None, None, "check"), 3.0, True, "x 3 ok (no bounds)"),
    (REQ_Q, 120.0, True, "requests 120 ok (min 50)"),
    (REQ_Q, 3.0, None, "requests 3 < min 50 (waiting for data)"),
    (REQ_Q, None, None, "requests 0 < min 50 (waiting for data)"),
])
def test_judge_one(query: Query, value: float | None, ok: bool | None, message: str) -> None:
    [result] = judge([query], {query.name: value})
    assert (result.ok, result.message) == (ok, message)
    assert result.value == (None if value is None or math.isnan(value) else value)  # NaN is stored as no value


def test_too_few_requests_judges_nothing() -> None:
    results = judge([ERR_Q, SCORE_Q, REQ_Q], {"error-rate": 0.5, "score": None, REQUESTS: 3.0})
    assert results == [
        CheckResult("error-rate", 0.5, None, "error-rate 0.5 not judged: requests 3 < min 50"),
        CheckResult("score", None, None, "score no data not judged: requests 3 < min 50"),
        CheckResult(REQUESTS, 3.0, None, "requests 3 < min 50 (waiting for data)"),
    ]


def test_enough_requests_judges_everything() -> None:
    results = judge([ERR_Q, SCORE_Q, REQ_Q], {"error-rate": 0.5, "score": 0.9, REQUESTS: 50.0})
    assert [r.ok for r in results] == [False, True, True]


def test_a_missing_value_is_no_data() -> None:
    assert judge([ERR_Q], {}) == [CheckResult("error-rate", None, None, "error-rate: no data (waiting for data)")]
