"""deploy/grafana/modelops-agent.json against a real Prometheus (Debian's) scraping a real
controller (`agent run` in a thread, its /metrics on a free port) on the local control plane,
while a model's canary rollout runs, fed by a model server that plays its stable and canary
versions (tests/integration/_model_server.py).

Every query of the dashboard, with Grafana's variables substituted as Grafana would (intervals
by a duration, "All" by `.*`), is accepted by Prometheus; every agent metric it names is in
Prometheus's series after the scrapes (but those this run has no event for, named below with
the reason); the panels on the model and its rollout return data for the running model, both
versions on the per-version panels, the canary's error rate and p95 latency the very values the
rollout's own analysis queries (agent.rollout.analysis_queries) read; every variable's
`label_values` finds its values. Twice: for
a controller, and for a fleet (a repo with one environment on the local cluster), whose series
carry environment and cluster labels and which adds the fleet's own."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.controller import Controller, Fleet, RunConfig
from agent.rollout import analysis_queries
from agent.spec import load
from devenv.cluster import PrometheusInfo, prometheus_reload
from tests.integration._model_server import ModelServer
from tests.integration._repos import committed
from tests.integration.conftest import wait_until
from tests.unit.test_grafana_json import (
    dashboard,
    exported_names,
    metric_names,
    queries,
    substitute,
    variable_queries,
)

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"
MODEL = "scorer"
INTERVAL = "15s"  # $__rate_interval and friends: 15 scrapes at Prometheus' 1 s interval

# Agent metrics a run cannot produce (each needs an event these tests do not cause): Prometheus'
# parser checks their queries and the unit test their names, but no series is awaited.
NOT_PRODUCED = {
    "modelops_agent_retrain_jobs_total": "a firing Monitor alert with action: retrain",
    "modelops_agent_rollout_state_invalid": "a stored rollout state that does not parse",
    "modelops_agent_rollout_state_invalid_reports_total": "a stored rollout state that does not parse",
    "modelops_agent_wave_stopped_total": "a fleet whose wave a failed rollout stops",
    "modelops_agent_environment_promotions_total": "a fleet promoting between environments by policy",
}
FLEET_ONLY = {"modelops_agent_fleet_members": "a fleet", "modelops_agent_cluster_unreachable": "a fleet"}
# Panels that show the running model and its rollout: each must return data for it.
MODEL_PANELS = ("Error rate by version", "p95 latency by version", "Requests by version")
ROLLOUT_PANELS = ("Rollout traffic", "Rollout step", "Rollout transitions", "Rollouts held")


def repo_docs(namespace: str, cluster: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """A repo whose model `scorer` (KServe) serves 1 and brings 2 in by a canary rollout judged on
    its error rate and p95 latency, whose analysis asks for more requests than the test ever
    sends: the rollout holds at its first step (20 %, held for `requests`) for as long as the test
    runs. With `cluster`, the repo has one environment, staging, on that cluster (a kubeconfig
    context)."""
    rollout = {"strategy": "canary", "steps": [20, 50, 100], "interval": "2s",
               "analysis": {"rules": ["error-rate", "latency-p95"], "minRequests": 1_000_000_000},
               "onSuccess": "none"}
    docs: dict[str, list[dict[str, Any]]] = {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": namespace},
                       "spec": {"policy": {"allowedNamespaces": [namespace]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [
            {"apiVersion": API, "kind": "Model", "metadata": {"name": MODEL, "namespace": namespace},
             "spec": {"format": "sklearn", "runtime": "sklearn-server", "backend": "kserve",
                      "versions": [{"version": "1", "uri": "s3://models/scorer/1/"},
                                   {"version": "2", "uri": "s3://models/scorer/2/"}],
                      "stable": "1", "canary": {"version": "2"}, "rollout": rollout, "replicas": 1}},
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": MODEL, "namespace": namespace},
             "spec": {"model": MODEL, "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                  "action": "rollback"},
                                                 {"name": "latency-p95", "type": "latency", "quantile": 0.95,
                                                  "threshold": 5}]}},
        ],
    }
    if cluster is not None:
        docs["environments/staging.yaml"] = [{"apiVersion": API, "kind": "Environment", "metadata": {"name": "staging"},
                                              "spec": {"clusters": [cluster]}}]
    return docs


def held_repo(root: Path, docs: dict[str, list[dict[str, Any]]]) -> Path:
    """A bare repo of `docs` (one commit on main)."""
    return committed(root / "work", docs, "scorer 2 as a canary")


def api(prometheus: PrometheusInfo, path: str, **params: str) -> Any:
    """Prometheus' answer (its `data`) to GET /api/v1/<path>; AssertionError with Prometheus'
    own error when it refuses the request."""
    url = f"{prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read() or b"{}")
    assert body.get("status") == "success", f"{params}: {body.get('errorType')}: {body.get('error')}"
    return body["data"]


# The notification metrics exist once the agent has a --notify target: a CloudEvents receiver here.
NOTIFIES = "modelops_agent_notifications_total" in exported_names()


class _Receiver(BaseHTTPRequestHandler):
    """A CloudEvents receiver that takes every event (202) and counts them."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received += 1
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiving(tmp_path: Path) -> Iterator[Path | None]:
    """A notify file with one CloudEvents target (`bus`) on a local receiver, while the agent
    has notifications; else None."""
    if not NOTIFIES:
        yield None
        return
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    notify = tmp_path / "notify.yaml"
    notify.write_text(yaml.safe_dump({"targets": [{"name": "bus", "type": "cloudevents",
                                                   "url": f"http://127.0.0.1:{httpd.server_address[1]}/events"}]}))
    try:
        yield notify
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def config_of(tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo, docs: dict[str, list[dict[str, Any]]],
              notify: Path | None = None) -> RunConfig:
    secret = tmp_path / "webhook-secret"
    secret.write_text("a webhook secret\n")
    return RunConfig(repo=f"file://{held_repo(tmp_path / 'repo', docs)}", interval=1.0, resync=600.0,
                     kubeconfig=str(kubeconfig), http_addr="127.0.0.1:0", webhook_secret_file=secret,
                     cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl",
                     prometheus_url=prometheus.url, notify=str(notify) if notify else None)


@contextmanager
def scraped(agent: Controller | Fleet, namespace: str, prometheus: PrometheusInfo) -> Iterator[str]:
    """`agent` run in a thread, and a model server playing `scorer` 1 (stable) and 2 (canary, 2 %
    errors, 200 ms), both scraped by the session's Prometheus; yields the agent's base URL."""
    server = ModelServer(namespace, MODEL).track("1", "stable", rps=20.0).track("2", "canary", error_rate=0.02,
                                                                                rps=20.0, latency=0.2)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        http = wait_until(lambda: agent.http, "the agent's HTTP server", 60)
        prometheus_reload(prometheus, [server.target, f"127.0.0.1:{http.port}"])
        yield str(http.url)
    finally:
        agent.stop()
        thread.join(timeout=60)
        server.close()
        prometheus_reload(prometheus, [])
        assert not thread.is_alive(), "the agent did not stop"


def check_dashboard(prometheus: PrometheusInfo, url: str, docs: dict[str, list[dict[str, Any]]],
                    not_produced: set[str]) -> None:
    """The dashboard's queries against Prometheus while the agent at `url` holds the rollout of
    scorer 2 at 20 % of the repo of `docs`."""
    spec = load({rel: yaml.safe_dump_all(content).encode() for rel, content in docs.items()})
    model = next(m for m in spec.models if m.name == MODEL)
    namespace = model.namespace
    board = dashboard()
    panel_queries = queries(board)
    # a webhook delivery with a wrong signature: answered, and counted by provider and status
    request = urllib.request.Request(f"{url}/webhook", data=b"{}", method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # the rollout started and holds for requests, as Prometheus sees it
    wait_until(lambda: api(prometheus, "query", query=f'modelops_agent_rollout_held{{model="{namespace}/{MODEL}",'
                                                      f'reason="requests"}} == 1')["result"],
               "Prometheus to see the rollout held for requests", 120)

    referenced: set[str] = set()
    for _, _, expr in panel_queries:
        referenced |= metric_names(substitute(expr))
    agent_names = {n for n in referenced if n.startswith("modelops_agent_")}
    assert not_produced <= agent_names  # the list names only what the dashboard shows
    expected = agent_names - not_produced
    own = f'{{instance="{urllib.parse.urlsplit(url).netloc}"}}'  # this agent's series, not an earlier test's
    missing: set[str] = set()

    def all_scraped() -> bool:
        missing.clear()
        missing.update(expected - set(api(prometheus, "label/__name__/values", **{"match[]": own})))
        return not missing
    try:
        wait_until(all_scraped, "every agent metric of the dashboard in Prometheus", 90)
    except AssertionError:
        raise AssertionError(f"never scraped: {sorted(missing)}") from None

    concrete = {"namespace": namespace, "model": MODEL}

    def in_the_window() -> bool:  # two scrapes of each series within the rate window
        for title, _, expr in panel_queries:
            if title in MODEL_PANELS + ROLLOUT_PANELS:
                result = api(prometheus, "query", query=substitute(expr, concrete, INTERVAL))["result"]
                if not result or (title in MODEL_PANELS and len({s["metric"].get("track") for s in result}) < 2):
                    return False
        return True
    wait_until(in_the_window, "data for the running model on the model and rollout panels", 60)

    # every query is accepted, with "All" everywhere, and returns data for the running model
    empty: list[str] = []
    for title, ref, expr in panel_queries:
        api(prometheus, "query", query=substitute(expr, interval=INTERVAL))
        result = api(prometheus, "query", query=substitute(expr, concrete, interval=INTERVAL))["result"]
        if title in MODEL_PANELS + ROLLOUT_PANELS and not result:
            empty.append(f"{title} {ref}")
        if title in MODEL_PANELS:
            assert {s["metric"].get("track") for s in result} == {"stable", "canary"}, f"{title}: {result}"
        if title == "Rollout traffic" and result:
            assert [float(s["value"][1]) for s in result] == [20.0], result
    assert not empty, f"no data for the running model on: {empty}"
    assert set(MODEL_PANELS + ROLLOUT_PANELS) <= {t for t, _, _ in panel_queries}

    # the canary's error rate is the one the model server plays, apart from the stable one's; the
    # canary's error rate and p95 latency are what the rollout's own analysis queries read
    at = f"{time.time():.3f}"
    shown = {}
    for title in ("Error rate by version", "p95 latency by version"):
        expr = substitute(next(e for t, _, e in panel_queries if t == title), concrete, INTERVAL)
        shown[title] = {s["metric"]["track"]: float(s["value"][1])
                        for s in api(prometheus, "query", query=expr, time=at)["result"]}
    rates, latencies = shown["Error rate by version"], shown["p95 latency by version"]
    assert rates["stable"] == pytest.approx(0.0, abs=1e-9) and rates["canary"] == pytest.approx(0.02, rel=0.05)
    assert latencies["stable"] < latencies["canary"] <= 0.25  # 50 ms and 200 ms: their histogram buckets
    judged = {q.name: q.expr for q in analysis_queries(model, spec.monitors, spec.config.metrics, "2", "canary",
                                                       INTERVAL)}
    for rule, value in (("error-rate", rates["canary"]), ("latency-p95", latencies["canary"])):
        result = api(prometheus, "query", query=judged[rule], time=at)["result"]
        assert [float(s["value"][1]) for s in result] == [pytest.approx(value)], (rule, judged[rule], result)


def variable_values(prometheus: PrometheusInfo) -> dict[str, list[str]]:
    """Every variable's values as Grafana asks for them (the label's values over the selector)."""
    return {name: api(prometheus, f"label/{label}/values", **{"match[]": substitute(selector)})
            for name, (selector, label) in variable_queries(dashboard()).items()}


def test_every_query_of_the_dashboard_runs_on_prometheus_scraping_a_controller(
        tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo) -> None:
    namespace = "grafana-dash"
    docs = repo_docs(namespace)
    with receiving(tmp_path) as notify:
        controller = Controller(config_of(tmp_path, kubeconfig, prometheus, docs, notify=notify))
        with scraped(controller, namespace, prometheus) as url:
            check_dashboard(prometheus, url, docs, set(NOT_PRODUCED) | set(FLEET_ONLY))
            values = variable_values(prometheus)
            assert values["job"] and values["instance"] and namespace in values["namespace"], values
            assert MODEL in values["model"], values
            if notify is not None:
                assert "bus" in values["target"] and _Receiver.received, values


def test_every_query_of_the_dashboard_runs_on_prometheus_scraping_a_fleet(
        tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo) -> None:
    namespace = "grafana-fleet"
    context = str(yaml.safe_load(kubeconfig.read_text())["current-context"])
    docs = repo_docs(namespace, cluster=context)
    with receiving(tmp_path) as notify:
        fleet = Fleet(config_of(tmp_path, kubeconfig, prometheus, docs, notify=notify))
        with scraped(fleet, namespace, prometheus) as url:
            check_dashboard(prometheus, url, docs, set(NOT_PRODUCED))
            values = variable_values(prometheus)
            assert "staging" in values["environment"] and context in values["cluster"], values
            instance = urllib.parse.urlsplit(url).netloc
            members = api(prometheus, "query",
                          query=f'modelops_agent_fleet_members{{state="up",instance="{instance}"}}')["result"]
            assert [float(s["value"][1]) for s in members] == [1.0], members
