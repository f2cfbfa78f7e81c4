"""agent.metrics_source.Prometheus against canned Prometheus API answers.

Contract tests of the response shapes the HTTP API documents (scalar, vector, empty, NaN,
status "error" with errorType/error, HTTP errors) and of the client's own rules (timeouts,
bearer token, never echoing it). The real server is tested in
tests/integration/test_prometheus_env.py.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.errors import AgentError
from agent.metrics_source import MetricsError, Prometheus

TOKEN = "prom-s3cr3t-token"


@dataclass
class Canned:
    """What the fake answers next: status, JSON body (or raw bytes), an optional delay."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def _success(result_type: str, result: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


@pytest.fixture
def fake() -> Iterator[tuple[str, Canned]]:
    canned = Canned()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
            canned.requests.append({"method": self.command, "path": self.path, "form": form,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
            if canned.delay:
                time.sleep(canned.delay)
            body = canned.body if isinstance(canned.body, bytes) else json.dumps(canned.body).encode()
            self.send_response(canned.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that gave up (the timeout test) breaks the pipe: expected

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", canned
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_scalar(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("scalar", [1700000000.0, "0.25"])
    assert Prometheus(url).query("0.25") == 0.25
    req = canned.requests[0]
    assert (req["method"], req["path"]) == ("POST", "/api/v1/query")
    assert req["form"]["query"] == ["0.25"]


def test_one_series_vector_and_time(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {"model": "m"}, "value": [1700000000.5, "0.031"]}])
    assert Prometheus(url + "/").query("sum(x)", at=1700000000.5) == pytest.approx(0.031)
    assert canned.requests[0]["form"]["time"] == ["1700000000.5"]
    assert "timeout" in canned.requests[0]["form"]


def test_empty_vector_and_nan_are_none(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("vector", [])
    assert Prometheus(url).query("absent_metric") is None
    canned.body = _success("vector", [{"metric": {}, "value": [1.0, "NaN"]}])
    assert Prometheus(url).query("0/0") is None
    canned.body = _success("scalar", [1.0, "NaN"])
    assert Prometheus(url).query("NaN") is None


def test_several_series_is_an_error(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {"version": str(v)}, "value": [1.0, "1"]} for v in (1, 2, 3)])
    with pytest.raises(MetricsError) as err:
        Prometheus(url).query("rate(x[1m])")
    text = str(err.value)
    assert "3 series" in text and '"version": "1"' in text and '"version": "2"' in text
    assert '"version": "3"' not in text
    assert isinstance(err.value, AgentError)


def test_matrix_is_an_error(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("matrix", [{"metric": {}, "values": [[1.0, "1"]]}])
    with pytest.raises(MetricsError, match="matrix"):
        Prometheus(url).query("x[1m]")


@pytest.mark.parametrize("status", [400, 422, 503])
def test_error_answer(fake: tuple[str, Canned], status: int) -> None:
    url, canned = fake
    canned.status = status
    canned.body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    with pytest.raises(MetricsError) as err:
        Prometheus(url).query("sum(x}")
    text = str(err.value)
    assert f"HTTP {status}" in text and "bad_data" in text and "parse error" in text
    assert "/api/v1/query" in text and "sum(x}" in text


def test_error_status_with_http_200(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = {"status": "error", "errorType": "execution", "error": "query timed out"}
    with pytest.raises(MetricsError, match="execution: query timed out"):
        Prometheus(url).query("x")


def test_not_prometheus(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.status = 503
    canned.body = b"<html>Service Unavailable</html>"
    with pytest.raises(MetricsError, match="HTTP 503: not a Prometheus API answer"):
        Prometheus(url).query("x")


def test_no_answer_times_out(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.delay = 3.0
    canned.body = _success("scalar", [1.0, "1"])
    start = time.monotonic()
    with pytest.raises(MetricsError, match=r"no answer within 0\.5s"):
        Prometheus(url, timeout=0.5).query("x")
    assert time.monotonic() - start < 2.0
    assert Prometheus(url, timeout=0.5).ready() is False


def test_connection_refused() -> None:
    with pytest.raises(MetricsError, match=r"^cannot connect to Prometheus at http://127\.0\.0\.1:1: connection refused"):
        Prometheus("http://127.0.0.1:1", timeout=1).query("x")
    assert Prometheus("http://127.0.0.1:1", timeout=1).ready() is False


def test_token_sent_as_bearer_and_never_echoed(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.status = 401
    canned.body = {"status": "error", "errorType": "unauthorized", "error": f"bad token {TOKEN}"}
    prom = Prometheus(url, token=TOKEN)
    with pytest.raises(MetricsError) as err:
        prom.query("x")
    assert canned.requests[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(err.value) and TOKEN not in repr(prom)
    assert "unauthorized" in str(err.value)


def test_no_token_no_header(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("scalar", [1.0, "1"])
    Prometheus(url).query("1")
    assert "authorization" not in canned.requests[0]["headers"]


def test_redirect_refused(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.status = 307
    canned.body = b""
    with pytest.raises(MetricsError, match="redirect"):
        Prometheus(url, token=TOKEN).query("x")
    assert len(canned.requests) == 1


def test_query_many_names_the_failing_one(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("scalar", [1.0, "2"])
    assert Prometheus(url).query_many({"a": "2", "b": "2"}) == {"a": 2.0, "b": 2.0}
    canned.status = 400
    canned.body = {"status": "error", "errorType": "bad_data", "error": "boom"}
    with pytest.raises(MetricsError, match=r"^error_rate: .*boom"):
        Prometheus(url).query_many({"error_rate": "x"})


def test_alerts(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    alert = {"labels": {"alertname": "MErrorRate", "action": "rollback", "model": "m"},
             "annotations": {"summary": "s"}, "state": "firing", "activeAt": "2026-01-01T00:00:00Z",
             "value": "5e-01"}
    canned.body = {"status": "success", "data": {"alerts": [alert]}}
    assert Prometheus(url).alerts() == [alert]
    assert (canned.requests[0]["method"], canned.requests[0]["path"]) == ("GET", "/api/v1/alerts")


def test_ready(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = b"Prometheus Server is Ready.\n"
    assert Prometheus(url).ready() is True
    canned.status = 503
    assert Prometheus(url).ready() is False


def test_bad_url() -> None:
    with pytest.raises(MetricsError, match="not an http"):
        Prometheus("ftp://example.com")


# --- hostile or broken answers: a number only when the API's format says so ----------------------

@pytest.mark.parametrize(("raw", "value"), [("+Inf", math.inf), ("-Inf", -math.inf), ("1e-3", 0.001), ("-0", 0.0)])
def test_infinities_are_returned_for_the_analysis_not_to_judge(fake: tuple[str, Canned], raw: str,
                                                               value: float) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {}, "value": [1.0, raw]}])
    assert Prometheus(url).query("x") == value
    canned.body = _success("scalar", [1.0, raw])
    assert Prometheus(url).query("x") == value


@pytest.mark.parametrize("raw", ["abc", "", " 1", "1_000", "inf", "Infinity", "nan", "0x10", "1" * 65,
                                 1.5, None, True, ["1"], {"v": 1}])
def test_a_sample_value_that_is_not_the_apis_number_is_an_error(fake: tuple[str, Canned], raw: Any) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {}, "value": [1.0, raw]}])
    with pytest.raises(MetricsError, match="not a sample value") as err:
        Prometheus(url).query("x")
    _no_python(str(err.value))


@pytest.mark.parametrize("result", [
    [{"metric": {}}], [{"metric": {}, "value": [1.0]}], [{"metric": {}, "value": ["1", "1"]}],
    [{"metric": {}, "value": [True, "1"]}], [{"metric": {}, "value": {"t": 1}}], ["x"], [None],
    [{"metric": "m", "value": [1.0, "1"]}],
])
def test_a_malformed_vector_is_an_error(fake: tuple[str, Canned], result: Any) -> None:
    url, canned = fake
    canned.body = _success("vector", result)
    with pytest.raises(MetricsError, match="malformed") as err:
        Prometheus(url).query("x")
    _no_python(str(err.value))


@pytest.mark.parametrize("data", [
    {"resultType": {"x": 1}, "result": []}, {"resultType": None, "result": []}, {"result": [1.0, "1"]},
    {"resultType": "vector", "result": {"a": 1}}, {"resultType": "streams", "result": []},
    {"resultType": "scalar", "result": "1"}, {"resultType": "scalar", "result": [1.0, "1", "2"]},
])
def test_an_answer_that_is_not_an_instant_query_answer_is_an_error(fake: tuple[str, Canned],
                                                                   data: dict[str, Any]) -> None:
    url, canned = fake
    canned.body = {"status": "success", "data": data}
    with pytest.raises(MetricsError) as err:
        Prometheus(url).query("x")
    _no_python(str(err.value))


@pytest.mark.parametrize("body", [
    b'{"status": "success", "data": {"resultType": "scalar", "result": [1.0, NaN]}}',
    b'{"status": "success", "data": {"resultType": "scalar", "result": [Infinity, "1"]}}',
    b"[" * 100_000 + b"]" * 100_000,
    b"\xff\xfe garbage",
])
def test_a_body_that_is_not_json_of_the_api_is_an_error(fake: tuple[str, Canned], body: bytes) -> None:
    url, canned = fake
    canned.body = body
    with pytest.raises(MetricsError, match="not a Prometheus API answer"):
        Prometheus(url).query("x")


def test_a_huge_body_is_an_error(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {"pad": "x" * 20_000}, "value": [1.0, "1"]}])
    with pytest.raises(MetricsError, match="larger than 4096 bytes"):
        Prometheus(url, max_body=4096).query("x")


def test_several_series_name_at_most_two_label_sets_cut_short(fake: tuple[str, Canned]) -> None:
    url, canned = fake
    canned.body = _success("vector", [{"metric": {"v": str(i) * 500}, "value": [1.0, "1"]} for i in range(3)])
    with pytest.raises(MetricsError, match="3 series") as err:
        Prometheus(url).query("x")
    assert len(str(err.value)) < 400


def _no_python(text: str) -> None:
    """User-facing text shows JSON, never a Python repr."""
    for marker in ("None", "True", "{'", "['"):
        assert marker not in text, text
