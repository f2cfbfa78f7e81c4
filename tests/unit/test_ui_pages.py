"""The web UI's pages over a board built from real rendered objects (agent.desired.load_desired
of a temp repo): the overview's rows and hooks, escaping of what Git says, the model page's
versions, gates, rollout timeline and chart, the audit page and its verification, the polling
answers, the headers and the read-only rule."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.audit import AuditLog
from agent.desired import load_desired
from agent.render import object_key
from agent.rollout import LiveRollouts, RolloutState
from agent.source import Revision
from agent.ui import CSP, Board, Published, Request, Response, UiApp, forge_links
from tests.unit.conftest import disk_repo, t

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
          evaluation: {auc: 0.95, latency_ms: 20}
        - version: "2"
          uri: s3://models/scorer/2/
          evaluation: {auc: 0.96}
      stable: "1"
      canary:
        version: "2"
      gates: [{metric: auc, min: 0.9}]
      rollout:
        strategy: canary
        steps: [10, 50, 100]
        interval: 1m
        analysis:
          checks:
            - name: error-rate
              query: 'sum(rate(request_errors_total{model="{model}",version="{version}",track="{track}"}[{interval}]))'
              max: 0.05
    """)

EVIL = '<img src=x onerror=alert(1)>'


def board_with(tmp_path: Path, *, message: str = EVIL, state: RolloutState | None = None,
               audit_log: Path | None = None, prometheus: Any = None, error: str = "") -> Board:
    desired = load_desired(disk_repo(tmp_path / "repo", ROLLOUT_MODEL), cached=False)
    desired = dataclasses.replace(desired, revision=Revision(commit="a1b2c3d4" * 5, author="Ann <ann@example.com>",
                                                             message=message))
    states = {"fraud/scorer": state} if state is not None else {}
    rollouts = LiveRollouts(states=states, traffic={"fraud/scorer": state.traffic} if state else {})
    board = Board()
    board.publish(Published(target="test-repo", desired=desired, live={}, annotations={}, rollouts=rollouts,
                            at=time.time(), drift={"fraud/scorer": ("Deployment/fraud/scorer",)}, error=error,
                            prometheus=prometheus, audit_log=audit_log))
    return board


def get(app: UiApp, target: str, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
    return app.handle(Request.of(method, target, headers))


def text(response: Response) -> str:
    return response.body.decode("utf-8")


def progressing(now: float) -> RolloutState:
    return RolloutState(model="fraud/scorer", version="2", stable="1", strategy="canary", phase="Progressing", step=1,
                        traffic=50, step_started=now - 30, message="step 2/3",
                        history=[{"at": now - 120, "kind": "started", "from": None, "to": "Progressing", "step": 0,
                                  "traffic": 10, "reason": "rollout of 2 started"},
                                 {"at": now - 30, "kind": "advanced", "from": "Progressing", "to": "Progressing",
                                  "step": 1, "traffic": 50, "reason": "step 1 healthy"}])


def test_the_overview_has_one_row_per_model_with_its_hooks_and_escapes_the_commit(tmp_path: Path) -> None:
    app = UiApp(board_with(tmp_path, state=progressing(time.time())))
    try:
        answer = get(app, "/")
        page = text(answer)
    finally:
        app.close()
    assert answer.status == 200 and answer.content_type.startswith("text/html")
    assert '<tr data-model="fraud/scorer" data-target="test-repo" data-cluster="">' in page
    traffic = re.search(r'<td data-field="traffic">(.*?)</td>', page, re.S)
    assert traffic is not None and "50% 1 / 50% 2" in traffic.group(1) and "<svg class=\"bar\"" in traffic.group(1)
    health = re.search(r'<td data-field="health">(.*?)</td>', page, re.S)
    assert health is not None and ("✓" in health.group(1) or "?" in health.group(1) or "✗" in health.group(1))
    assert "step 2/3" in page and "Progressing" in page
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "1 object" in page  # the drift
    assert not re.search(r"\bNone\b|Traceback|<object at", page)  # no Python in what people read
    headers = dict(answer.headers)
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert " style=" not in page and "<script>" not in page and "onerror=" not in page.replace("onerror=alert", "")


def test_the_model_page_shows_versions_gates_the_rollout_timeline_and_a_chart(tmp_path: Path) -> None:
    now = time.time()

    class Prometheus:  # the chart's inputs; the range API itself: tests/unit/test_ui_chart.py
        def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
            value = 0.01 if 'track="canary"' in expr else 0.02
            return [(start + i * step, value * (1 + i / 10)) for i in range(10)]

    log = tmp_path / "audit.jsonl"
    with AuditLog(log, "test") as audit:
        audit.write("rollout", model="fraud/scorer", transition="advanced", step=2, traffic=50, version="2",
                     target="test-repo", checks=[{"name": "error-rate", "value": 0.01, "ok": True, "message": ""}])
    app = UiApp(board_with(tmp_path, state=progressing(now), prometheus=Prometheus(), audit_log=log))
    try:
        page = text(get(app, "/models/fraud/scorer?target=test-repo"))
    finally:
        app.close()
    assert "auc" in page and "gate ≥ 0.9" in page and "latency_ms" in page
    assert "step 1 · 10%" in page and "step 3 · 100%" in page
    assert "rollout of 2 started" in page and "step 1 healthy" in page
    assert re.search(r'<svg class="chart"[^>]*>', page)
    assert re.search(r'<path data-series="new" class="line series-new" d="M[0-9.]+ [0-9.]+ L', page)
    assert re.search(r'<path data-series="stable" class="line series-stable" d="M', page)
    assert "max 0.05" in page  # the gate's bound on the chart
    assert not re.search(r"\bNone\b|Traceback|<object at", page)


def test_unknown_pages_and_models_are_404_and_writes_are_405(tmp_path: Path) -> None:
    app = UiApp(board_with(tmp_path))
    try:
        assert get(app, "/models/fraud/nosuch").status == 404
        assert get(app, "/nothing").status == 404
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            answer = get(app, "/", method=method)
            assert answer.status == 405 and ("Allow", "GET, HEAD") in answer.headers
        css = get(app, "/static/app.css")
        assert css.status == 200 and css.content_type.startswith("text/css")
        assert get(app, "/static/../_app.py").status == 404
    finally:
        app.close()


def test_polling_answers_204_when_nothing_moved_and_the_fragment_once_it_does(tmp_path: Path) -> None:
    board = board_with(tmp_path)
    app = UiApp(board, poll_wait=0.3)
    try:
        g = board.generation
        started = time.monotonic()
        assert get(app, f"/?fragment=1&since={g}").status == 204
        assert time.monotonic() - started >= 0.25
        entry = board.entries()[0]
        timer = threading.Timer(0.1, lambda: board.publish(dataclasses.replace(entry, at=time.time())))
        timer.start()
        answer = get(app, f"/?fragment=1&since={g}")
        timer.join()
        assert answer.status == 200 and dict(answer.headers)["X-Board-Generation"] == str(g + 1)
        body = text(answer)
        assert body.lstrip().startswith("<section") and "<html" not in body and 'data-model="fraud/scorer"' in body
        stale = get(app, "/?fragment=1&since=0")  # the page is behind: answered at once
        assert stale.status == 200
    finally:
        app.close()


def test_the_audit_page_paginates_newest_first_and_says_whether_the_chain_holds(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, "test") as audit:
        for i in range(120):
            audit.write("reconcile", target="test-repo", commit=f"{i:040x}", message=EVIL, result="succeeded")
    app = UiApp(board_with(tmp_path, audit_log=log))
    try:
        first = text(get(app, "/audit"))
        assert "Chain verified" in first and 'data-seq="120"' in first and 'data-seq="70"' not in first
        assert "page 1 of 3" in first and EVIL not in first
        assert 'href="/audit?event=reconcile"' in first
        filtered = text(get(app, "/audit?event=nosuch"))
        assert "0 with event nosuch" in filtered and "data-seq=" not in filtered
        last = text(get(app, "/audit?page=3"))
        assert 'data-seq="1"' in last and 'data-seq="21"' not in last
        lines = log.read_bytes().splitlines(keepends=True)
        record = json.loads(lines[4])
        record["result"] = "failed"
        lines[4] = (json.dumps(record) + "\n").encode()
        log.write_bytes(b"".join(lines))
        broken = text(get(app, "/audit"))
        assert "Chain broken" in broken and "line 5" in broken
    finally:
        app.close()


def test_forge_links_are_http_only_and_know_each_forge() -> None:
    github = forge_links("https://github.com/acme/models.git")
    assert github is not None and github.commit("a" * 40) == f"https://github.com/acme/models/commit/{'a' * 40}"
    assert github.pull("#12") == "https://github.com/acme/models/pull/12"
    gitlab = forge_links("git@gitlab.com:group/sub/models.git")
    assert gitlab is not None and gitlab.pull("!3") == "https://gitlab.com/group/sub/models/-/merge_requests/3"
    gitea = forge_links("http://user:secret@127.0.0.1:3000/ann/models.git", "gitea")
    assert gitea is not None and gitea.web == "http://127.0.0.1:3000/ann/models" and "secret" not in gitea.web
    assert gitea.pull("javascript:alert(1)") is None and github.commit("not-a-sha") is None
    assert forge_links("javascript:alert(1)//github.com/a/b") is None
    assert forge_links("/srv/git/models") is None


@pytest.mark.parametrize("path", ["/", "/audit", "/models/fraud/scorer"])
def test_head_answers_like_get(tmp_path: Path, path: str) -> None:
    app = UiApp(board_with(tmp_path))
    try:
        assert get(app, path, method="HEAD").status == 200
    finally:
        app.close()


def test_history_links_only_http_urls_and_escapes_what_the_audit_log_says(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, "test") as audit:
        audit.write("object", model="fraud/scorer", action="update", object={"kind": "Deployment", "name": "scorer"},
                    drift=["spec.replicas"], dry_run=False, result="applied")
        audit.write("reconcile", target="test-repo", commit="b" * 40, author='"><script>alert(1)</script>',
                    message=EVIL, pull_request="javascript:alert(1)", result="succeeded",
                    models=[{"model": "fraud/scorer", "stable": "1", "canary": "2", "traffic": 10}])
        audit.write("reconcile", target="test-repo", commit="c" * 40, author="Ann", message="second",
                    pull_request="https://forge.example/acme/models/pulls/7", result="succeeded",
                    models=[{"model": "fraud/scorer", "stable": "2"}])
    app = UiApp(board_with(tmp_path, audit_log=log))
    try:
        page = text(get(app, "/models/fraud/scorer"))
        many = get(app, "/?" + "&".join(f"a{i}=1" for i in range(50)))
    finally:
        app.close()
    assert "PR javascript:alert(1)" in page  # shown as text, never as a link
    assert 'href="javascript' not in page and "<script>alert" not in page and EVIL not in page
    assert 'href="https://forge.example/acme/models/pulls/7"' in page
    assert "spec.replicas" in page and "Deployment/scorer" in page  # the drift event
    assert many.status == 200


def test_a_forge_links_commits_in_the_history(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with AuditLog(log, "test") as audit:
        audit.write("reconcile", target="test-repo", commit="d" * 40, author="Ann", message="m", pull_request="#4",
                    result="succeeded", models=[{"model": "fraud/scorer", "stable": "1"}])
    app = UiApp(board_with(tmp_path, audit_log=log), forge=forge_links("https://github.com/acme/models.git"))
    try:
        page = text(get(app, "/models/fraud/scorer"))
    finally:
        app.close()
    assert f'href="https://github.com/acme/models/commit/{"d" * 40}"' in page
    assert 'href="https://github.com/acme/models/pull/4"' in page


def test_a_fleet_board_has_a_row_per_cluster_and_each_model_page_picks_its_cluster(tmp_path: Path) -> None:
    board = board_with(tmp_path)
    [entry] = board.entries()
    board.forget(entry.key)
    for cluster in ("eu-1", "us-1"):
        board.publish(dataclasses.replace(entry, target="test-repo-prod", environment="prod", cluster=cluster))
    app = UiApp(board)
    try:
        page = text(get(app, "/"))
        model = text(get(app, "/models/fraud/scorer?target=test-repo-prod&cluster=us-1"))
        none = get(app, "/models/fraud/scorer?cluster=nowhere")
    finally:
        app.close()
    for cluster in ("eu-1", "us-1"):
        assert f'<tr data-model="fraud/scorer" data-target="test-repo-prod" data-cluster="{cluster}">' in page
        assert f'href="/models/fraud/scorer?target=test-repo-prod&amp;cluster={cluster}"' in page
    assert '<span class="chip cluster">us-1</span>' in model.split("Also on")[0]
    assert "Also on" in model and "eu-1" in model.split("Also on")[1]
    assert none.status == 404


def test_what_the_cluster_says_is_escaped(tmp_path: Path) -> None:
    board = board_with(tmp_path)
    [entry] = board.entries()
    live = {}
    for o in entry.desired.objects:
        seen = copy.deepcopy(o)
        if o["kind"] == "InferenceService":
            seen["status"] = {"conditions": [{"type": "Ready", "status": "False",
                                              "message": '<script>alert("ready")</script>'}]}
        live[object_key(o)] = seen
    board.publish(dataclasses.replace(entry, live=live))
    app = UiApp(board)
    try:
        pages = [text(get(app, "/")), text(get(app, "/models/fraud/scorer"))]
    finally:
        app.close()
    for page in pages:
        assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;ready&#34;)&lt;/script&gt;" in page
        assert "⚠ " in page or "Degraded" in page
