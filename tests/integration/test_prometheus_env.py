"""The local Prometheus (Debian's real server, devenv.cluster.prometheus_up) scraping a fake
model server (tests/integration/_model_server.py), read through the agent's client
(agent.metrics_source.Prometheus), and the agent's rendered PrometheusRule firing in it.

No mocks between the client and Prometheus. Each test uses its own model name, so the series
of one test never match another's queries on the shared session Prometheus. Waits poll with
deadlines; the timings printed (run with -s) are the figures the progressive-delivery design
relies on: cold start, and how long a changed error rate takes to show in a query.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.metrics_source import MetricsError, Prometheus
from agent.render import prometheus_rule
from agent.spec import MetricNames, Monitor, MonitorRule
from devenv import cluster as dc
from devenv.cluster import DevclusterError, PrometheusInfo
from tests.integration._model_server import ModelServer

pytestmark = pytest.mark.integration

NS = "fraud"


def _poll(check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """check() until truthy; its last value (and any MetricsError) in the failure message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except MetricsError as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


def _model() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


@contextmanager
def _scraped(prometheus: PrometheusInfo, server: ModelServer, rule_files: list[Path] | None = None) -> Iterator[None]:
    """Prometheus scrapes server (and evaluates rule_files) from the block on.

    Not undone after it: Prometheus passes target changes on at most every 5 s, so each reload
    costs up to that; the next test's reload replaces these targets and rules anyway (a closed
    server meanwhile is only a failing scrape of a model no other test queries)."""
    try:
        dc.prometheus_reload(prometheus, [server.target], rule_files or [])
        yield
    finally:
        server.close()


def _error_ratio(model: str, version: str, window: str = "10s") -> str:
    sel = f'model="{model}",version="{version}"'
    return f"sum(rate(request_errors_total{{{sel}}}[{window}])) / sum(rate(request_total{{{sel}}}[{window}]))"


def _near(target: float, tolerance: float) -> Callable[[float | None], bool]:
    return lambda v: v is not None and abs(v - target) <= tolerance


def test_error_rate_query_and_change(prometheus: PrometheusInfo) -> None:
    model = _model()
    server = ModelServer(NS, model).track("1", "stable", error_rate=0.01).track("2", "canary", error_rate=0.2)
    prom = Prometheus(prometheus.url, timeout=5)
    assert prom.ready()
    with _scraped(prometheus, server):
        canary = _poll(lambda: _near(0.2, 0.005)(v := prom.query(_error_ratio(model, "2"))) and v,
                       "the canary's error ratio")
        assert canary == pytest.approx(0.2, abs=0.005)
        assert prom.query(_error_ratio(model, "1")) == pytest.approx(0.01, abs=0.001)
        values = prom.query_many({"stable": _error_ratio(model, "1"), "canary": _error_ratio(model, "2"),
                                  "nothing": _error_ratio(model, "9")})
        assert values["nothing"] is None  # 0/0 over no series: empty, not an error

        changed = time.monotonic()
        server.set("2", error_rate=0.6)
        _poll(lambda: (v := prom.query(_error_ratio(model, "2"))) is not None and v > 0.3,
              "the raised error rate to show", timeout=15)
        visible = time.monotonic() - changed
        _poll(lambda: _near(0.6, 0.01)(prom.query(_error_ratio(model, "2"))), "the ratio to settle at 0.6",
              timeout=30)
        settled = time.monotonic() - changed
        print(f"\nerror rate 0.2 -> 0.6: above 0.3 after {visible:.1f}s, within 0.01 of 0.6 after {settled:.1f}s "
              f"(rate window 10s, scrape and evaluation 1s)")
        assert prom.query(_error_ratio(model, "1")) == pytest.approx(0.01, abs=0.001)  # the stable is untouched


def test_several_series_are_refused(prometheus: PrometheusInfo) -> None:
    model = _model()
    server = ModelServer(NS, model).track("1", "stable").track("2", "canary")
    prom = Prometheus(prometheus.url, timeout=5)
    with _scraped(prometheus, server):
        _poll(lambda: prom.query(f'count(request_total{{model="{model}"}})') == 2, "both versions scraped")
        with pytest.raises(MetricsError, match="2 series"):
            prom.query(f'request_total{{model="{model}"}}')
        with pytest.raises(MetricsError, match="bad_data"):
            prom.query("sum(request_total{")


def test_latency_quantile(prometheus: PrometheusInfo) -> None:
    model = _model()
    server = ModelServer(NS, model).track("2", "canary", latency=0.3)
    prom = Prometheus(prometheus.url, timeout=5)
    p95 = (f'histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{{model="{model}",'
           f'version="2"}}[5s])))')
    with _scraped(prometheus, server):
        # Every observation is in the bucket (0.25, 0.5]: the quantile interpolates inside it.
        value = _poll(lambda: (v := prom.query(p95)) is not None and 0.25 < v <= 0.5 and v, "p95 in (0.25, 0.5]")
        assert value == pytest.approx(0.25 + 0.95 * 0.25)
        server.set("2", latency=0.02)
        _poll(lambda: (v := prom.query(p95)) is not None and 0.01 < v <= 0.025, "p95 in (0.01, 0.025]")
        mean = prom.query(f'sum(rate(request_predict_seconds_sum{{model="{model}"}}[3s])) / '
                          f'sum(rate(request_predict_seconds_count{{model="{model}"}}[3s]))')
        assert mean is not None and 0.01 < mean < 0.3


def test_rendered_error_rate_alert_fires(prometheus: PrometheusInfo, tmp_path: Path) -> None:
    """The PrometheusRule the agent renders, loaded as a rule file, fires on the canary's errors."""
    model = _model()
    rule = MonitorRule(name="error-rate", type="errorRate", threshold=0.1, window="10s", for_="2s",
                       severity="critical", action="rollback")
    rendered = prometheus_rule(Monitor(name=f"{model}-slo", namespace=NS, model=model, rules=(rule,)), MetricNames())
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump(rendered["spec"]))
    alertname = rendered["spec"]["groups"][0]["rules"][0]["alert"]

    server = ModelServer(NS, model).track("1", "stable", error_rate=0.0).track("2", "canary", error_rate=0.0)
    prom = Prometheus(prometheus.url, timeout=5)

    def ours(state: str) -> list[dict[str, Any]]:
        return [a for a in prom.alerts() if a["labels"].get("alertname") == alertname and a["state"] == state]

    with _scraped(prometheus, server, [rule_file]):
        _poll(lambda: prom.query(_error_ratio(model, "2")) == 0.0, "a healthy canary scraped")
        assert ours("pending") == [] and ours("firing") == []
        broke = time.monotonic()
        server.set("2", error_rate=0.5)  # the model's ratio over both versions: 0.25 > 0.1
        firing = _poll(lambda: ours("firing"), "the alert to fire", timeout=30)
        print(f"\nrendered errorRate alert (window 10s, for 2s) firing {time.monotonic() - broke:.1f}s after the "
              f"error rate rose")
        assert len(firing) == 1
        labels = firing[0]["labels"]
        assert labels["action"] == "rollback" and labels["model"] == model and labels["namespace"] == NS
        assert labels["severity"] == "critical" and labels["rule_type"] == "errorRate"
        assert float(firing[0]["value"]) > 0.1 and firing[0]["activeAt"]
        assert "error rate" in firing[0]["annotations"]["summary"]


def test_reload_refuses_a_broken_rule_file(prometheus: PrometheusInfo, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: g\n  rules:\n  - alert: X\n    expr: sum(\n")
    with pytest.raises(DevclusterError, match="refused the new configuration"):
        dc.prometheus_reload(prometheus, [], [bad])
    dc.prometheus_reload(prometheus, [])  # and it still runs with a good one
    assert Prometheus(prometheus.url).ready()


def test_up_down_leaves_no_process(tmp_path: Path) -> None:
    server = ModelServer(NS, _model()).track("1", "stable")
    try:
        start = time.monotonic()
        info = dc.prometheus_up(tmp_path / "p")
        cold = time.monotonic() - start
        start = time.monotonic()
        dc.prometheus_reload(info, [server.target])
        targets = time.monotonic() - start
        print(f"\nprometheus cold start (ready) {cold:.2f}s; a reload until the new target is active {targets:.2f}s")
        assert Prometheus(info.url).ready()
        assert info.config_file.is_file() and str(info.directory) == str((tmp_path / "p").resolve())
    finally:
        dc.prometheus_down(tmp_path / "p")
        server.close()
    assert not Path(f"/proc/{info.pid}").exists()  # stopped and reaped, not a zombie
    assert not Prometheus(info.url, timeout=1).ready()
    dc.prometheus_down(tmp_path / "p")  # idempotent
    dc.prometheus_down(tmp_path / "never-started")
