"""Unit tests of `spec.rollout` on a Model (#11): the schema, the loader's defaults and durations
in seconds, and each validation error at file:line and its field path. In memory only."""

from __future__ import annotations

import pytest

from agent.spec._common import seconds_of
from agent.spec._types import Analysis, AnalysisCheck, Canary, Rollout
from tests.unit.conftest import MODEL, assert_error, errors_of, loads, only_error, repo, t

FILE = "models/scorer.yaml"

# line numbers are asserted below: keep the layout
ROLLOUT_MODEL = t("""
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
        - version: "2"
          uri: s3://models/scorer/2/
      stable: "1"
      canary:
        version: "2"
      rollout:
        strategy: canary
        steps:
          - 10
          - 25
          - 50
          - 100
        interval: 1m30s
        analysis:
          rules: [p99-latency, error-rate]
          checks:
            - name: p95-under-300ms
              query: 'histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{namespace="{namespace}",model="{model}",version="{version}",track="{track}"}[{interval}])))'
              max: 0.3
            - name: enough-throughput
              query: 'sum(rate(request_total{model="scorer"}[5m]))'
              min: 1
              max: 1000
          minRequests: 50
        maxFailedChecks: 2
        onSuccess: pullRequest
        onFailure: rollback
        revertPullRequest: true
    """)
# lines: 16 canary.version, 17 rollout, 19 steps, 20-23 steps[0..3], 24 interval,
# 26 analysis.rules, 28 checks[0] (its name), 29 checks[0].query, 30 checks[0].max, 31 checks[1]

MONITOR = t("""
    apiVersion: modelops.dev/v1alpha1
    kind: Monitor
    metadata:
      name: scorer
      namespace: fraud
    spec:
      model: scorer
      rules:
        - {name: p99-latency, type: latency, quantile: 0.99, threshold: 0.25}
        - {name: error-rate, type: errorRate, threshold: 0.02}
    """)


def _repo(model: str = ROLLOUT_MODEL, monitor: str | None = MONITOR) -> dict[str, str | bytes]:
    return repo({FILE: model, **({"monitors/scorer.yaml": monitor} if monitor is not None else {})})


# --- a valid rollout --------------------------------------------------------------------------


def test_canary_rollout_loads_to_the_dataclasses() -> None:
    model = loads(_repo()).models[0]
    query = ('histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{namespace="{namespace}",'
             'model="{model}",version="{version}",track="{track}"}[{interval}])))')
    assert model.rollout == Rollout(
        strategy="canary",
        steps=(10, 25, 50, 100),
        interval="1m30s",
        interval_seconds=90.0,
        analysis=Analysis(
            rules=("p99-latency", "error-rate"),
            checks=(
                AnalysisCheck(name="p95-under-300ms", query=query, max=0.3),
                AnalysisCheck(name="enough-throughput", query='sum(rate(request_total{model="scorer"}[5m]))',
                              min=1.0, max=1000.0),
            ),
            min_requests=50,
        ),
        max_failed_checks=2,
        on_success="pullRequest",
        on_failure="rollback",
        revert_pull_request=True,
        scale_down_delay="10m",
        scale_down_delay_seconds=600.0,
    )
    # no traffic written: the first step decides it
    assert model.canary == Canary(version="2", traffic=10)


def test_minimal_rollout_takes_the_defaults() -> None:
    text = ROLLOUT_MODEL.split("    interval:")[0]
    model = loads(_repo(text, monitor=None)).models[0]
    assert model.rollout == Rollout(strategy="canary", steps=(10, 25, 50, 100))
    assert (model.rollout.interval, model.rollout.interval_seconds) == ("5m", 300.0)
    assert model.rollout.analysis == Analysis(rules=(), checks=(), min_requests=0)
    assert (model.rollout.max_failed_checks, model.rollout.on_success, model.rollout.on_failure,
            model.rollout.revert_pull_request) == (1, "commit", "rollback", False)


def test_written_canary_traffic_is_kept_under_a_canary_rollout() -> None:
    model = loads(_repo(ROLLOUT_MODEL.replace('version: "2"\n  rollout', 'version: "2"\n    traffic: 25\n  rollout'))).models[0]
    assert model.canary == Canary(version="2", traffic=25)


def test_blue_green_rollout() -> None:
    text = MODEL.replace('  stable: "1"\n', (
        '    - version: "2"\n'
        "      uri: s3://models/scorer/2/\n"
        '  stable: "1"\n'
        '  canary: {version: "2", traffic: 40}\n'
        "  rollout:\n"
        "    strategy: blueGreen\n"
        "    interval: 500ms\n"
        "    scaleDownDelay: 1h30m\n"))
    model = loads(_repo(text, monitor=None)).models[0]
    assert model.rollout == Rollout(strategy="blueGreen", interval="500ms", interval_seconds=0.5,
                                    scale_down_delay="1h30m", scale_down_delay_seconds=5400.0)
    # the preview gets no live traffic until the switch, whatever traffic says
    assert model.canary == Canary(version="2", traffic=0)


def test_rollout_without_a_canary_is_valid() -> None:
    text = ROLLOUT_MODEL.replace('  canary:\n    version: "2"\n', "")
    model = loads(_repo(text)).models[0]
    assert model.canary is None and model.rollout is not None and model.rollout.steps == (10, 25, 50, 100)


def test_model_without_rollout_has_none() -> None:
    assert loads(repo()).models[0].rollout is None


@pytest.mark.parametrize(("duration", "seconds"), [
    ("1m30s", 90.0), ("500ms", 0.5), ("5m", 300.0), ("10m", 600.0), ("1h30m", 5400.0), ("2d", 172800.0),
    ("1w", 604800.0), ("1y", 31536000.0), ("1h0m1s", 3601.0), ("0s", 0.0), ("1s500ms", 1.5),
])
def test_seconds_of_prometheus_durations(duration: str, seconds: float) -> None:
    assert seconds_of(duration) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m", "5x", "1.5h", "5m ", " 5m", "-1s"])
def test_seconds_refuses_what_is_not_a_duration(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds_of(bad)


# --- canary traffic ---------------------------------------------------------------------------


def test_canary_without_traffic_is_refused_without_a_rollout() -> None:
    text = MODEL.replace('  stable: "1"\n', (
        '    - version: "2"\n'
        "      uri: s3://models/scorer/2/\n"
        '  stable: "1"\n'
        "  canary:\n"
        '    version: "2"\n'))
    err = only_error(repo({FILE: text}))
    assert_error(err, FILE, 15, "spec.canary.traffic", "required unless spec.rollout decides the traffic")


# --- steps ------------------------------------------------------------------------------------


def test_steps_not_ascending() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("      - 50\n", "      - 20\n")))
    assert_error(err, FILE, 22, "spec.rollout.steps[2]", "steps must be strictly ascending: 20 after 25")


def test_repeated_step_is_not_ascending() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("      - 50\n", "      - 25\n")))
    assert_error(err, FILE, 22, "spec.rollout.steps[2]", "steps must be strictly ascending: 25 after 25")


def test_steps_not_ending_at_100() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("      - 100\n", "      - 90\n")))
    assert_error(err, FILE, 23, "spec.rollout.steps[3]", "the last step must be 100, not 90")


def test_canary_strategy_needs_steps() -> None:
    text = ROLLOUT_MODEL.replace("    steps:\n      - 10\n      - 25\n      - 50\n      - 100\n", "")
    err = only_error(_repo(text))
    assert_error(err, FILE, 17, "spec.rollout.steps", "required for the canary strategy")


def test_blue_green_with_steps_is_refused() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("strategy: canary", "strategy: blueGreen")))
    assert_error(err, FILE, 19, "spec.rollout.steps", "steps apply to the canary strategy only")


def test_scale_down_delay_on_canary_is_refused() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("    interval: 1m30s\n", "    scaleDownDelay: 5m\n")))
    assert_error(err, FILE, 24, "spec.rollout.scaleDownDelay", "applies to the blueGreen strategy only")


@pytest.mark.parametrize(("old", "new", "line", "field", "text"), [
    ("      - 10\n", "      - 0\n", 20, "spec.rollout.steps[0]", "less than the minimum of 1"),
    ("      - 100\n", "      - 101\n", 23, "spec.rollout.steps[3]", "greater than the maximum of 100"),
    ("strategy: canary", "strategy: linear", 18, "spec.rollout.strategy", "'linear' is not one of 'canary', 'blueGreen'"),
    ("onFailure: rollback", "onFailure: pause", 38, "spec.rollout.onFailure", "'pause' is not one of 'rollback'"),
    ("onSuccess: pullRequest", "onSuccess: merge", 37, "spec.rollout.onSuccess", "is not one of 'commit'"),
    ("maxFailedChecks: 2", "maxFailedChecks: 0", 36, "spec.rollout.maxFailedChecks", "less than the minimum of 1"),
    ("minRequests: 50", "minRequests: -1", 35, "spec.rollout.analysis.minRequests", "less than the minimum of 0"),
    ("interval: 1m30s", "interval: 90", 24, "spec.rollout.interval", '90 is a number, expected a string (quote it: "90")'),
    ("interval: 1m30s", "interval: 1.5m", 24, "spec.rollout.interval", "'1.5m' must be a Prometheus duration such as 30s"),
    ("    onFailure: rollback\n", "    onFailure: rollback\n    pause: true\n", 39, "spec.rollout.pause",
     "unknown field 'pause'"),
])
def test_schema_errors(old: str, new: str, line: int, field: str, text: str) -> None:
    assert old in ROLLOUT_MODEL
    # no Monitor: a Model the schema refuses leaves its Monitor with a "Model not found" of its own
    err = only_error(_repo(ROLLOUT_MODEL.replace(old, new), monitor=None))
    assert_error(err, FILE, line, field, text)


def test_more_than_20_steps_is_refused() -> None:
    steps = "".join(f"      - {n}\n" for n in range(5, 101, 5))  # 20 steps: allowed
    base = "      - 10\n      - 25\n      - 50\n      - 100\n"
    assert loads(_repo(ROLLOUT_MODEL.replace(base, steps))).models[0].rollout is not None
    err = only_error(_repo(ROLLOUT_MODEL.replace(base, "      - 1\n" + steps), monitor=None))
    assert_error(err, FILE, 19, "spec.rollout.steps", "is too long")


def test_zero_interval_is_refused() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("interval: 1m30s", "interval: 0s")))
    assert_error(err, FILE, 24, "spec.rollout.interval", "must be longer than 0")


# --- checks -----------------------------------------------------------------------------------


def test_unknown_placeholder_in_a_check_query() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace('model="{model}"', 'model="{modle}"')))
    assert_error(err, FILE, 29, "spec.rollout.analysis.checks[0].query",
                 "unknown placeholder {modle} (allowed: {namespace}, {model}, {version}, {track}, {interval})")


def test_each_unknown_placeholder_once() -> None:
    errors = errors_of(_repo(ROLLOUT_MODEL.replace('version="{version}"', 'version="{ver}",x="{ver}",y="{stage}"')))
    assert sorted(e.message.split(" (")[0] for e in errors) == ["unknown placeholder {stage}", "unknown placeholder {ver}"]


@pytest.mark.parametrize("query", [
    'up{namespace="x"}',
    'sum(rate(x{job="a",namespace=~"f.*"}[5m]))',
    'x{ namespace = "{namespace}" }',
    'count({__name__=~"request_.*"})',
    'vector(1)',
])
def test_promql_selectors_are_not_placeholders(query: str) -> None:
    model = loads(_repo(ROLLOUT_MODEL.replace("sum(rate(request_total{model=\"scorer\"}[5m]))", query))).models[0]
    assert model.rollout is not None and model.rollout.analysis.checks[1].query == query


def test_check_without_min_or_max() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("          max: 0.3\n", "")))
    assert_error(err, FILE, 28, "spec.rollout.analysis.checks[0]", "a check needs min, max or both")


def test_check_min_above_max() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("min: 1\n", "min: 2000\n")))
    assert_error(err, FILE, 33, "spec.rollout.analysis.checks[1].min", "min (2000) is greater than max (1000)")


def test_duplicate_check_name() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("name: enough-throughput", "name: p95-under-300ms")))
    assert_error(err, FILE, 31, "spec.rollout.analysis.checks[1].name", "duplicate check name 'p95-under-300ms'")


def test_check_name_must_be_a_dns_label() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("name: enough-throughput", "name: Enough_Throughput"), monitor=None))
    assert_error(err, FILE, 31, "spec.rollout.analysis.checks[1].name",
                 "'Enough_Throughput' must be lowercase letters, digits and '-', starting and ending with a letter or digit")


# --- analysis rules against the Monitors ------------------------------------------------------


def test_unknown_analysis_rule_lists_the_known_rules() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("rules: [p99-latency, error-rate]", "rules: [p99-latency, errors]")))
    assert_error(err, FILE, 26, "spec.rollout.analysis.rules[1]",
                 "rule 'errors' is not a rule of a Monitor of Model 'scorer' (error-rate, p99-latency)")


def test_analysis_rules_without_any_monitor() -> None:
    errors = errors_of(_repo(monitor=None))
    assert len(errors) == 2
    assert_error(errors[0], FILE, 26, "spec.rollout.analysis.rules[0]",
                 "rule 'p99-latency' is not a rule of a Monitor of Model 'scorer' (no Monitor of Model 'scorer' declares rules)")
    assert_error(errors[1], FILE, 26, "spec.rollout.analysis.rules[1]", "rule 'error-rate'")


def test_analysis_rules_come_from_every_monitor_of_the_model_only() -> None:
    second = MONITOR.replace("name: scorer\n  namespace", "name: scorer-extra\n  namespace").replace(
        "    - {name: p99-latency, type: latency, quantile: 0.99, threshold: 0.25}\n"
        "    - {name: error-rate, type: errorRate, threshold: 0.02}\n",
        "    - {name: drift, type: drift, feature: amount, threshold: 0.2}\n")
    other_model = MONITOR.replace("name: scorer\n  namespace", "name: other\n  namespace").replace(
        "model: scorer", "model: other").replace("p99-latency", "other-latency")
    other = MODEL.replace("name: scorer", "name: other")
    text = ROLLOUT_MODEL.replace("rules: [p99-latency, error-rate]", "rules: [drift, error-rate, other-latency]")
    err = only_error({**_repo(text), "monitors/extra.yaml": second, "monitors/other.yaml": other_model,
                      "models/other.yaml": other})
    assert_error(err, FILE, 26, "spec.rollout.analysis.rules[2]",
                 "rule 'other-latency' is not a rule of a Monitor of Model 'scorer' (drift, error-rate, p99-latency)")


def test_a_monitor_in_another_namespace_does_not_count() -> None:
    moved = MONITOR.replace("namespace: fraud", "namespace: recsys")
    other = MODEL.replace("namespace: fraud", "namespace: recsys")
    errors = errors_of({**_repo(monitor=moved), "models/other.yaml": other})
    assert [e.field for e in errors] == ["spec.rollout.analysis.rules[0]", "spec.rollout.analysis.rules[1]"]


def test_a_schema_invalid_monitor_of_the_model_is_not_second_guessed() -> None:
    broken = MONITOR.replace("threshold: 0.02", "threshold: -1")
    err = only_error(_repo(ROLLOUT_MODEL.replace("rules: [p99-latency, error-rate]", "rules: [p99-latency, gone]"),
                           monitor=broken))
    assert (err.file, err.field) == ("monitors/scorer.yaml", "spec.rules[1].threshold")


def test_an_excluded_monitor_does_not_count() -> None:
    config = t("""
        apiVersion: modelops.dev/v1alpha1
        kind: RepositoryConfig
        metadata:
          name: test-repo
        spec:
          exclude: ["monitors/*"]
          policy:
            allowedNamespaces: [fraud, recsys, "team-*"]
        """)
    errors = errors_of({**_repo(), "repo.yaml": config})
    assert [e.field for e in errors] == ["spec.rollout.analysis.rules[0]", "spec.rollout.analysis.rules[1]"]


def test_a_model_with_other_errors_gets_no_rule_error() -> None:
    err = only_error(_repo(ROLLOUT_MODEL.replace("rules: [p99-latency, error-rate]", "rules: [gone]")
                           .replace("      - 100\n", "      - 90\n")))
    assert err.field == "spec.rollout.steps[3]"
