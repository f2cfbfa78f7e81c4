"""The model page's chart against hostile Prometheus answers (a local server plays the broken
peer; the real Prometheus is in tests/integration/test_ui_http.py): the range API read
strictly (malformed and non-finite points dropped, several series or a non-matrix refused), the
SVG geometry, "no data" rather than a failure, and a Prometheus that hangs does not hold the page."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.metrics_source import MetricsError, Prometheus
from agent.ui import ChartSource, UiApp, draw
from tests.unit.test_ui_pages import board_with, get, progressing, text


@dataclass
class Canned:
    body: Any = None
    delay: float = 0.0
    forms: list[str] = field(default_factory=list)


@pytest.fixture
def peer() -> Iterator[tuple[str, Canned]]:
    canned = Canned()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            canned.forms.append(self.rfile.read(length).decode())
            if canned.delay:
                time.sleep(canned.delay)
            body = json.dumps(canned.body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", canned
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def matrix(*series: list[Any]) -> dict[str, Any]:
    return {"status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": v} for v in series]}}


def test_the_range_api_keeps_only_finite_well_formed_points_in_time_order(peer: tuple[str, Canned]) -> None:
    url, canned = peer
    canned.body = matrix([[20, "0.5"], [10, "0.25"], [30, "NaN"], [40, "+Inf"], [50, "-Inf"], [60, "1e400"],
                          [70, "oops"], [True, "1"], ["80", "1"], [90], [100, 1.5], [110, "2"]])
    assert Prometheus(url).query_range("up", 0, 200, 10) == [(10.0, 0.25), (20.0, 0.5), (110.0, 2.0)]
    assert "query_range" not in canned.forms[0] and "step=10" in canned.forms[0]
    canned.body = matrix()
    assert Prometheus(url).query_range("up", 0, 200, 10) == []
    canned.body = matrix([[1, "1"]], [[1, "2"]])
    with pytest.raises(MetricsError, match="2 series"):
        Prometheus(url).query_range("up", 0, 200, 10)
    canned.body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    with pytest.raises(MetricsError, match="not a range query answer"):
        Prometheus(url).query_range("up", 0, 200, 10)
    with pytest.raises(MetricsError, match="finite"):
        Prometheus(url).query_range("up", 0, float("inf"), 10)


def test_the_chart_geometry_stays_in_its_box_and_says_no_data_when_empty() -> None:
    chart = draw("error-rate", [("new", "2", [(100.0, 0.01), (150.0, 0.04), (200.0, 0.02)]),
                                ("stable", "1", [(100.0, 0.02), (200.0, 0.02)])], 100.0, 200.0,
                 [("max", 0.05), ("min", None)])
    assert chart.nodata == "" and [line.points for line in chart.lines] == [3, 2]
    coords = [float(n) for line in chart.lines for n in re.findall(r"[0-9.]+", line.path)]
    assert coords and all(0 <= c <= max(chart.width, chart.height) for c in coords)
    assert chart.lines[0].path.startswith("M") and " L" in chart.lines[0].path
    assert [label for _, label in chart.bounds] == ["max 0.05"]
    empty = draw("error-rate", [("new", "2", []), ("stable", "1", [])], 100.0, 200.0)
    assert empty.nodata == "no data" and all(line.path == "" for line in empty.lines)


def test_a_garbage_answer_is_no_data_on_a_page_that_still_renders(tmp_path: Path, peer: tuple[str, Canned]) -> None:
    url, canned = peer
    canned.body = {"status": "success", "data": {"resultType": "matrix", "result": "<script>alert(1)</script>"}}
    app = UiApp(board_with(tmp_path, state=progressing(time.time()), prometheus=Prometheus(url, timeout=2)))
    try:
        answer = get(app, "/models/fraud/scorer")
    finally:
        app.close()
    page = text(answer)
    assert answer.status == 200 and "no data" in page and "<script>alert" not in page
    assert 'data-series="new"' not in page  # nothing drawn from it


def test_a_prometheus_that_hangs_does_not_hold_the_page(tmp_path: Path, peer: tuple[str, Canned]) -> None:
    url, canned = peer
    canned.delay = 3.0
    canned.body = matrix([[time.time() - 30, "0.01"], [time.time() - 10, "0.02"]])
    app = UiApp(board_with(tmp_path, state=progressing(time.time()), prometheus=Prometheus(url, timeout=4)),
                charts=ChartSource(deadline=2.0))
    try:
        started = time.monotonic()
        page = text(get(app, "/models/fraud/scorer"))
        took = time.monotonic() - started
        assert took < 2.8, took
        assert "Prometheus did not answer within 2 s" in page
        overview = time.monotonic()
        assert get(app, "/").status == 200 and time.monotonic() - overview < 0.5  # the overview asks nothing
    finally:
        app.close()


def test_a_young_rollout_is_asked_up_to_now_on_a_minute_wide_axis(tmp_path: Path, peer: tuple[str, Canned]) -> None:
    """Prometheus answers a range into the future with its lookback's last samples (a line that
    falls off): a rollout younger than the axis' minute is asked only up to now."""
    url, canned = peer
    now = time.time()
    canned.body = matrix([[now - 10, "0.01"], [now - 5, "0.02"]])
    old = progressing(now)
    young = dataclasses.replace(old, step_started=now - 10, history=[{**h, "at": now - 10} for h in old.history])
    app = UiApp(board_with(tmp_path, state=young, prometheus=Prometheus(url, timeout=2)))
    try:
        asked = time.time()
        assert get(app, "/models/fraud/scorer").status == 200
    finally:
        app.close()
    assert canned.forms
    for form in canned.forms:
        fields = dict(part.split("=", 1) for part in form.split("&"))
        assert float(fields["end"]) <= time.time() and float(fields["end"]) >= asked - 5
        assert float(fields["start"]) == pytest.approx(now - 10, abs=1)
