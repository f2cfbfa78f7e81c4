"""Monitor actions (#11 item 4), the pure parts: `action: retrain` in the spec (the job template
read, checked and kept out of the applied manifests), Alertmanager payloads and the bearer
check, matching alerts to the rules of the spec, the retrain Job's name, body and dedup
decision, and the /alerts endpoint of the controller's HTTP server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest

from agent.controller import HttpServer, Metrics
from agent.controller._alerts import (
    FiringAlert,
    alert_names,
    bearer_ok,
    from_prometheus,
    job_name,
    match,
    parse_alertmanager,
    retrain_decision,
    retrain_job,
    selector,
)
from agent.render import prometheus_rule, render
from agent.spec import Monitor, MonitorRule, Spec
from tests.unit.conftest import assert_error, errors_of, loads, only_error, repo, t

JOB = t("""
    apiVersion: batch/v1
    kind: Job
    metadata:
      labels: {team: fraud}
    spec:
      backoffLimit: 1
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: train
              image: registry.example/train:1
              env:
                - {name: MODEL, value: overridden}
                - {name: KEEP, value: "1"}
    """)


def monitor(action: str = "retrain", retrain: str | None = "{jobTemplate: training/retrain.yaml}") -> str:
    """A Monitor of fraud/scorer with one errorRate rule; `retrain` is the rule's retrain value."""
    text = t("""
        apiVersion: modelops.dev/v1alpha1
        kind: Monitor
        metadata:
          name: scorer-slo
          namespace: fraud
        spec:
          model: scorer
          rules:
            - name: error-rate
              type: errorRate
              threshold: 0.05
              action: ACTION
        """).replace("ACTION", action)
    return text + (f"      retrain: {retrain}\n" if retrain is not None else "")


def retrain_repo(*, template: bool = True, **extra: str) -> dict[str, str | bytes]:
    """The baseline repo, a retrain Monitor and its template (`template=False`: none; a Job
    file no rule names would be taken for a manifest, and refused by the policy)."""
    files: dict[str, str | bytes] = {"monitors/scorer.yaml": monitor(), "training/retrain.yaml": JOB}
    files.update(extra)
    if not template:
        del files["training/retrain.yaml"]
    return repo(files)


# --- spec -------------------------------------------------------------------------------------


def test_retrain_rule_loads_its_template_and_it_is_not_applied() -> None:
    spec = loads(retrain_repo())
    rule = spec.monitors[0].rules[0]
    assert rule.action == "retrain" and rule.retrain_job_template == "training/retrain.yaml"
    assert rule.retrain_job is not None and rule.retrain_job["kind"] == "Job"
    assert (rule.retrain_cooldown, rule.retrain_cooldown_seconds) == ("6h", 21600.0)
    assert spec.manifests == ()  # a Job is not an allowed kind: it was never taken for a manifest
    assert not any(o["kind"] == "Job" for o in render(spec))
    alert = prometheus_rule(spec.monitors[0], spec.config.metrics)["spec"]["groups"][0]["rules"][0]
    assert alert["labels"]["action"] == "retrain"


def test_cooldown_and_a_template_under_an_excluded_directory() -> None:
    files = retrain_repo(**{"monitors/scorer.yaml": monitor(
        retrain="{jobTemplate: ./templates/../training/retrain.yaml, cooldown: 90m}")})
    rule = loads(files).monitors[0].rules[0]
    assert rule.retrain_job_template == "training/retrain.yaml"
    assert (rule.retrain_cooldown, rule.retrain_cooldown_seconds) == ("90m", 5400.0)
    excluded = dict(files)
    excluded["repo.yaml"] = str(excluded["repo.yaml"]) + "  exclude: ['training/*']\n"
    assert loads(excluded).monitors[0].rules[0].retrain_job is not None


@pytest.mark.parametrize(("action", "retrain", "field", "text"), [
    ("retrain", None, "spec.rules[0]", "retrain"),
    ("rollback", "{jobTemplate: training/retrain.yaml}", "spec.rules[0].retrain", ""),
    ("retrain", "{cooldown: 1h}", "spec.rules[0].retrain", "jobTemplate"),
    ("retrain", "{jobTemplate: training/retrain.json}", "spec.rules[0].retrain.jobTemplate", ""),
    ("retrain", "{jobTemplate: training/retrain.yaml, cooldown: soon}", "spec.rules[0].retrain.cooldown", ""),
])
def test_schema_errors_of_retrain(action: str, retrain: str | None, field: str, text: str) -> None:
    files = retrain_repo(**{"monitors/scorer.yaml": monitor(action, retrain)})
    errors = [e for e in errors_of(files) if e.file == "monitors/scorer.yaml"]
    assert errors and errors[0].field == field and text in errors[0].message, errors


def test_template_errors_name_file_line_field() -> None:
    missing = retrain_repo(template=False, **{"monitors/scorer.yaml": monitor(retrain="{jobTemplate: nope.yaml}")})
    assert_error(only_error(missing), "monitors/scorer.yaml", 13, "spec.rules[0].retrain.jobTemplate", "not found")
    outside = retrain_repo(template=False, **{"monitors/scorer.yaml": monitor(retrain="{jobTemplate: ../x.yaml}")})
    assert_error(only_error(outside), "monitors/scorer.yaml", 13, "spec.rules[0].retrain.jobTemplate",
                 "inside the repo")
    deployment = JOB.replace("kind: Job", "kind: Deployment").replace("batch/v1", "apps/v1")
    e = only_error(retrain_repo(**{"training/retrain.yaml": deployment}))
    assert_error(e, "training/retrain.yaml", 2, "kind", "must be a batch/v1 Job, not apps/v1/Deployment")
    namespaced = JOB.replace("metadata:\n", "metadata:\n  namespace: other\n")
    assert_error(only_error(retrain_repo(**{"training/retrain.yaml": namespaced})), "training/retrain.yaml", 4,
                 "metadata.namespace", "runs in the model's namespace")
    two = only_error(retrain_repo(**{"training/retrain.yaml": JOB + "---\n" + JOB}))
    assert_error(two, "monitors/scorer.yaml", 13, "spec.rules[0].retrain.jobTemplate", "exactly one YAML document")
    no_pod = t("""
        apiVersion: batch/v1
        kind: Job
        spec:
          backoffLimit: 1
        """)
    assert_error(only_error(retrain_repo(**{"training/retrain.yaml": no_pod})), "training/retrain.yaml", 4,
                 "spec.template", "needs spec.template")
    broken = only_error(retrain_repo(**{"training/retrain.yaml": "kind: [\n"}))
    assert broken.file == "training/retrain.yaml"


# --- alerts in ----------------------------------------------------------------------------------


def test_parse_alertmanager_keeps_the_firing() -> None:
    body = json.dumps({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "A", "model": "m"}, "startsAt": "2026-01-01T00:00:00.5Z"},
        {"status": "resolved", "labels": {"alertname": "B"}, "startsAt": "2026-01-01T00:00:00Z"},
    ]}).encode()
    assert parse_alertmanager(body) == [FiringAlert({"alertname": "A", "model": "m"}, "2026-01-01T00:00:00.5Z")]
    for bad in (b"{", b"[]", b'{"alerts": 1}', b'{"alerts": [{"status": "firing", "labels": {"a": 1}}]}',
                b'{"alerts": [{"status": "firing", "labels": {}}]}', b"\xff"):
        with pytest.raises(ValueError):
            parse_alertmanager(bad)


def test_from_prometheus_drops_pending() -> None:
    raw: list[dict[str, Any]] = [
        {"labels": {"alertname": "A"}, "state": "firing", "activeAt": "2026-01-01T00:00:00Z"},
        {"labels": {"alertname": "B"}, "state": "pending", "activeAt": "2026-01-01T00:00:00Z"},
        {"labels": "junk", "state": "firing", "activeAt": "x"},
    ]
    assert [a.name for a in from_prometheus(raw)] == ["A"]


def test_bearer() -> None:
    assert bearer_ok("Bearer s3cret", b"s3cret") and bearer_ok("bearer  s3cret ", b"s3cret")
    for header in (None, "", "s3cret", "Basic s3cret", "Bearer s3cre", "Bearer s3cretx", "Bearer"):
        assert not bearer_ok(header, b"s3cret")


# --- matching, naming, dedup ------------------------------------------------------------------


def spec_with(action: str = "retrain") -> Spec:
    files = retrain_repo(template=action == "retrain", **{"monitors/scorer.yaml": monitor(
        action, None if action != "retrain" else "{jobTemplate: training/retrain.yaml}")})
    return loads(files)


def firing(starts: str = "2026-01-01T10:00:00.123456789Z", **labels: str) -> FiringAlert:
    base = {"alertname": "ScorerErrorRate", "namespace": "fraud", "model": "scorer", "monitor": "scorer-slo",
            "action": "retrain", "severity": "warning"}
    return FiringAlert({**base, **labels}, starts)


def test_alert_names_are_the_rendered_ones() -> None:
    rules = (MonitorRule("error-rate", "errorRate", 0.1, "5m", "5m", "warning", "alert"),
             MonitorRule("p99_latency", "latency", 0.2, "5m", "5m", "warning", "rollback"))
    mon = Monitor(name="m", namespace="ns", model="fraud-scorer-v2", rules=rules)
    rendered = [r["alert"] for r in prometheus_rule(mon, loads(repo()).config.metrics)["spec"]["groups"][0]["rules"]]
    assert list(alert_names(mon)) == rendered == ["FraudScorerV2ErrorRate", "FraudScorerV2P99Latency"]


def test_match_needs_every_label_to_name_a_rule_of_the_spec() -> None:
    spec = spec_with()
    assert [(m.model.key, m.rule.name) for m in match([firing()], spec)] == [("fraud/scorer", "error-rate")]
    for wrong in ({"namespace": "recsys"}, {"model": "other"}, {"monitor": "other"}, {"alertname": "Other"}):
        assert match([firing(**wrong)], spec) == []
    assert match([firing()], spec_with("alert")) == []  # the spec's action decides, not the label
    # the same alert from Prometheus (ns fraction) and Alertmanager (another precision) counts once
    assert len(match([firing(), firing("2026-01-01T10:00:00.123Z"), firing("2026-01-01T11:00:00+01:00")], spec)) == 1
    assert len(match([firing(), firing("2026-01-01T12:00:00Z")], spec)) == 2


def test_job_name_is_stable_per_firing_episode() -> None:
    spec = spec_with()
    a, b = match([firing()], spec)[0], match([firing("2026-01-01T10:00:00Z")], spec)[0]
    c = match([firing("2026-01-02T10:00:00Z")], spec)[0]
    assert job_name(a) == job_name(b) != job_name(c)
    assert job_name(a).startswith("scorer-retrain-") and len(job_name(a)) <= 63


def test_retrain_decision() -> None:
    now, hour = 1_000_000.0, 3600.0
    assert retrain_decision([], "j", now, 6 * hour) == "create"
    assert retrain_decision([("j", now - 7 * hour)], "j", now, 6 * hour) == "exists"
    assert retrain_decision([("old", now - 5 * hour)], "j", now, 6 * hour) == "cooldown"
    assert retrain_decision([("old", now - 7 * hour), ("x", None)], "j", now, 6 * hour) == "create"


def test_retrain_job_body() -> None:
    m = match([firing()], spec_with())[0]
    job = retrain_job(m, "scorer-retrain-x", "test-repo")
    meta = job["metadata"]
    assert (meta["name"], meta["namespace"]) == ("scorer-retrain-x", "fraud")
    assert meta["labels"] == {"team": "fraud", "app.kubernetes.io/managed-by": "modelops-agent",
                              "modelops.dev/target": "test-repo", "modelops.dev/model": "scorer",
                              "modelops.dev/monitor": "scorer-slo", "modelops.dev/rule": "error-rate"}
    assert meta["annotations"]["modelops.dev/alert-started-at"] == "2026-01-01T10:00:00Z"
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"KEEP": "1", "MODEL": "scorer", "MODEL_VERSION": "1", "ALERT": "ScorerErrorRate"}
    assert m.rule.retrain_job is not None and m.rule.retrain_job["spec"]["template"]["spec"]["containers"][0]["env"][0][
        "value"] == "overridden"  # the template itself is untouched
    assert selector(m) == ("app.kubernetes.io/managed-by=modelops-agent,modelops.dev/model=scorer,"
                           "modelops.dev/monitor=scorer-slo,modelops.dev/rule=error-rate")


# --- POST /alerts -----------------------------------------------------------------------------


def post(url: str, body: bytes, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_alerts_endpoint() -> None:
    got: list[list[FiringAlert]] = []
    metrics = Metrics(process=False)
    body = json.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "A"},
                                   "startsAt": "2026-01-01T00:00:00Z"}]}).encode()
    with HttpServer(health=lambda: (True, ""), ready=lambda: (True, ""), metrics=metrics, webhook_secret=b"s3cret",
                    on_push=lambda _c: None, on_alerts=got.append) as srv:
        assert post(srv.url + "/alerts", body, None)[0] == 401
        assert post(srv.url + "/alerts", body, "wrong")[0] == 401
        assert got == []
        assert post(srv.url + "/alerts", b"{", "s3cret")[0] == 400
        status, text = post(srv.url + "/alerts", body, "s3cret")
        assert (status, text) == (200, "1 firing alert(s) accepted\n")
        assert got == [[FiringAlert({"alertname": "A"}, "2026-01-01T00:00:00Z")]]
        get = urllib.request.Request(srv.url + "/alerts", headers={"Authorization": "Bearer s3cret"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(get, timeout=10)
        assert info.value.code == 405
    sample = metrics.registry.get_sample_value
    assert sample("modelops_agent_webhook_requests_total", {"provider": "alertmanager", "code": "401"}) == 2
    assert sample("modelops_agent_webhook_requests_total", {"provider": "alertmanager", "code": "200"}) == 1
    with HttpServer(health=lambda: (True, ""), ready=lambda: (True, "")) as srv:
        assert post(srv.url + "/alerts", body, "s3cret")[0] == 404  # no secret: no endpoint


# --- AlertActions against a fake API --------------------------------------------------------------


class FakeJobs:
    """The Job list/create part of the API: what AlertActions asks, and the Jobs it holds."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
                retries: int | None = None, **_: Any) -> Any:
        self.calls.append(method)
        if method == "GET":
            return {"items": list(self.items)}
        assert method == "POST" and path == "/apis/batch/v1/namespaces/fraud/jobs"
        self.items.append({**body, "metadata": {**body["metadata"], "creationTimestamp": "2026-01-01T10:00:05Z"}})
        return body


def actions(cluster: FakeJobs, aborted: list[tuple[str, str]], records: list[dict[str, Any]]) -> Any:
    from agent.controller._alerts import AlertActions

    def abort(_desired: Any, key: str, reason: str) -> bool:
        aborted.append((key, reason))
        return True

    return AlertActions(cluster, None, abort, record=lambda event, **f: records.append({"event": event, **f}),
                        event=lambda *a: None, metric=lambda *a: None)


def test_actions_create_one_job_and_consult_the_api_after_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    desired = SimpleNamespace(spec=spec_with())  # act() reads only the spec of a Desired
    cluster, aborted, records = FakeJobs(), [], []  # type: ignore[var-annotated]
    monkeypatch.setattr("time.time", lambda: 1767261700.0)  # 2026-01-01T10:01:40Z
    first = actions(cluster, aborted, records)
    for _ in range(3):
        first.push([firing()])
        first.act(desired)
    assert len(cluster.items) == 1 and [r["event"] for r in records] == ["retrain"]
    assert cluster.calls == ["GET", "POST"]  # later ticks: memory spares the API
    second = actions(cluster, aborted, records)  # a restart: nothing in memory
    second.push([firing("2026-01-01T10:01:00Z")])  # even another episode: within the cooldown
    second.act(desired)
    assert len(cluster.items) == 1 and cluster.calls == ["GET", "POST", "GET"] and aborted == []
    monkeypatch.setattr("time.time", lambda: 1767261700.0 + 7 * 3600)  # the cooldown is over
    second.push([firing("2026-01-01T17:00:00Z")])
    second.act(desired)
    assert len(cluster.items) == 2


def test_rollback_alerts_abort_and_old_pushes_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    desired = SimpleNamespace(spec=spec_with("rollback"))
    cluster, aborted, records = FakeJobs(), [], []  # type: ignore[var-annotated]
    acts = actions(cluster, aborted, records)
    acts.push([firing(action="rollback")])
    acts.act(desired)
    assert aborted == [("fraud/scorer", "alert ScorerErrorRate")] and cluster.calls == []
    acts.push([firing()])
    pushed = time.monotonic()
    monkeypatch.setattr("time.monotonic", lambda: pushed + 301)  # a follower's push, acted on too late
    acts.act(desired)
    assert len(aborted) == 1
    acts.act(desired)  # nothing pushed, nothing polled: nothing happens
    assert len(aborted) == 1
