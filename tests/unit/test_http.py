"""The controller's HTTP server: probes, /metrics (checked by promtool), 404s, timeouts, the
connection cap, and a stop() that leaves no thread and no open port."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from agent.controller._http import HttpServer, parse_http_addr
from agent.controller._metrics import CONTENT_TYPE, Metrics

TIMEOUT = 5.0


class State:
    """What the controller's probes would report."""

    def __init__(self) -> None:
        self.alive: tuple[bool, str] = (True, "")
        self.ready: tuple[bool, str] = (False, "no successful sync yet")

    def health(self) -> tuple[bool, str]:
        return self.alive

    def readiness(self) -> tuple[bool, str]:
        return self.ready


def get(url: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode(), dict(e.headers)


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
def server(state: State) -> Iterator[HttpServer]:
    with HttpServer(health=state.health, ready=state.readiness, metrics=Metrics()) as srv:
        yield srv


def promtool() -> str:
    """promtool from Debian's prometheus package (`make system`; .ci/run installs it)."""
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(path, os.X_OK):
        pytest.fail("promtool is missing: run `make system` (Debian's prometheus package)")
    return path


# ---------------------------------------------------------------- probes


def test_healthz_follows_the_liveness_check(server: HttpServer, state: State) -> None:
    assert get(server.url + "/healthz")[:2] == (200, "ok\n")
    state.alive = (False, "the sync loop stopped 300 s ago")
    assert get(server.url + "/healthz")[:2] == (503, "unhealthy\n")  # no detail unless asked
    assert get(server.url + "/healthz?verbose")[:2] == (
        503, "[-]reconcile-loop failed: the sync loop stopped 300 s ago\nhealthz check failed\n")
    state.alive = (True, "")
    assert get(server.url + "/healthz")[0] == 200
    assert get(server.url + "/healthz?verbose")[:2] == (200, "[+]reconcile-loop ok\nhealthz check passed\n")


def test_readyz_turns_ready_after_the_first_sync(server: HttpServer, state: State) -> None:
    assert get(server.url + "/readyz")[:2] == (503, "not ready\n")
    assert get(server.url + "/readyz?verbose")[:2] == (
        503, "[-]sync failed: no successful sync yet\nreadyz check failed\n")
    state.ready = (True, "")
    status, text, headers = get(server.url + "/readyz")
    assert (status, text) == (200, "ok\n")
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["Cache-Control"] == "no-store"
    assert get(server.url + "/readyz?verbose=1")[:2] == (200, "[+]sync ok\nreadyz check passed\n")


def test_readyz_never_shows_the_remote_s_credentials(server: HttpServer, state: State) -> None:
    """Not ready because git failed: unauthenticated, the body says only that; verbose names
    the reason, with the user info of every URL in it dropped (a user name may be a token too)
    and on one line whatever git wrote."""
    state.ready = (False, "git fetch https://ghp_T0kenAsUser@git.example/ml/models.git: fatal: unable to access "
                          "'https://x-access-token:s3cr3t@git.example/ml/models.git/': The requested URL returned "
                          "error: 403\n\x1b[31mremote: denied")
    assert get(server.url + "/readyz")[:2] == (503, "not ready\n")
    status, text, _ = get(server.url + "/readyz?verbose")
    assert status == 503 and "ghp_T0kenAsUser" not in text and "s3cr3t" not in text and "x-access-token" not in text
    assert text == ("[-]sync failed: git fetch https://git.example/ml/models.git: fatal: unable to access "
                    "'https://git.example/ml/models.git/': The requested URL returned error: 403 "
                    "\\x1b[31mremote: denied\nreadyz check failed\n")


def test_a_check_that_raises_is_a_503_and_the_server_goes_on(state: State) -> None:
    def broken() -> tuple[bool, str]:
        raise KeyError("secret-looking detail")

    with HttpServer(health=broken, ready=state.readiness) as srv:
        status, text, _ = get(srv.url + "/healthz")
        assert (status, text) == (503, "unhealthy\n")
        status, text, _ = get(srv.url + "/healthz?verbose")
        assert (status, text) == (503, "[-]reconcile-loop failed: the check failed: KeyError\nhealthz check failed\n")
        assert get(srv.url + "/readyz")[0] == 503


def test_probes_answer_head_and_refuse_other_methods(server: HttpServer) -> None:
    status, text, headers = get(server.url + "/healthz", method="HEAD")
    assert (status, text, headers["Content-Length"]) == (200, "", "3")
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _, headers = get(server.url + path, method="POST")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_a_query_string_does_not_change_the_path(server: HttpServer) -> None:
    assert get(server.url + "/healthz?verbose=1")[0] == 200


@pytest.mark.parametrize("path", ["/", "/healthz/", "/healthzz", "/metrics/x", "/../etc/passwd", "/webhookx"])
def test_unknown_paths_are_404(server: HttpServer, path: str) -> None:
    assert get(server.url + path)[:2] == (404, "not found\n")


# ---------------------------------------------------------------- /metrics


def exercise(metrics: Metrics) -> None:
    for trigger in ("poll", "webhook", "watch", "resync", "startup"):
        metrics.observe_reconcile(trigger, 0.42, applied=3, pruned=1, failed=0)
    metrics.observe_reconcile("poll", 75.0, failed=2)
    metrics.drift("heal", 2)
    metrics.drift("detect")
    metrics.synced("0123456789abcdef0123456789abcdef01234567", when=1_790_000_000.5)
    metrics.fetch_error()
    metrics.invalid_commit()
    metrics.set_leader(True)
    metrics.set_queue_depth(4)
    metrics.webhook("github", 202)
    metrics.webhook(None, 400)
    metrics.registry_event("moved")
    metrics.registry_event("proposed", 2)


def test_metrics_pass_promtool(server: HttpServer) -> None:
    tool = promtool()
    assert server.metrics is not None
    for phase in ("fresh", "used"):
        if phase == "used":
            exercise(server.metrics)
        status, text, headers = get(server.url + "/metrics")
        assert status == 200
        assert headers["Content-Type"] == CONTENT_TYPE
        check = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"{phase}:\n{check.stdout}{check.stderr}"
    for name in (
        'modelops_agent_reconcile_duration_seconds_bucket{le="+Inf",trigger="poll"} 2.0',
        'modelops_agent_reconcile_duration_seconds_count{trigger="resync"} 1.0',
        "modelops_agent_objects_applied_total 15.0",
        "modelops_agent_objects_pruned_total 5.0",
        "modelops_agent_objects_failed_total 2.0",
        'modelops_agent_drift_events_total{policy="heal"} 2.0',
        'modelops_agent_drift_events_total{policy="detect"} 1.0',
        "modelops_agent_last_synced_timestamp_seconds 1.7900000005e+09",
        'modelops_agent_last_synced_commit_info{commit="0123456789abcdef0123456789abcdef01234567"} 1.0',
        "modelops_agent_git_fetch_errors_total 1.0",
        "modelops_agent_invalid_commits_total 1.0",
        'modelops_agent_registry_events_total{kind="moved"} 1.0',
        'modelops_agent_registry_events_total{kind="proposed"} 2.0',
        'modelops_agent_registry_events_total{kind="error"} 0.0',
        "modelops_agent_leader 1.0",
        "modelops_agent_work_queue_depth 4.0",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in text, name


def test_metrics_can_be_left_out() -> None:
    with HttpServer(health=lambda: (True, ""), ready=lambda: (True, "")) as srv:
        assert get(srv.url + "/metrics")[0] == 404


def test_commit_info_is_absent_until_a_sync_then_names_only_the_last() -> None:
    metrics = Metrics(process=False)
    assert b"last_synced_commit_info{" not in metrics.exposition()
    assert metrics.registry.get_sample_value("modelops_agent_last_synced_timestamp_seconds") == 0
    metrics.synced("a" * 40)
    metrics.synced("b" * 40)
    text = metrics.exposition().decode()
    assert text.count("modelops_agent_last_synced_commit_info{") == 1
    assert 'commit="' + "b" * 40 + '"' in text
    assert abs((metrics.registry.get_sample_value("modelops_agent_last_synced_timestamp_seconds") or 0) - time.time()) < 60


def test_every_trigger_and_policy_series_exists_from_the_start() -> None:
    text = Metrics(process=False).exposition().decode()
    for trigger in ("poll", "webhook", "watch", "resync", "startup"):
        assert f'modelops_agent_reconcile_duration_seconds_count{{trigger="{trigger}"}} 0.0' in text
    for policy in ("heal", "detect"):
        assert f'modelops_agent_drift_events_total{{policy="{policy}"}} 0.0' in text
    assert "process_" not in text


def test_label_values_are_a_closed_set() -> None:
    metrics = Metrics(process=False)
    with pytest.raises(ValueError, match="trigger"):
        metrics.observe_reconcile("cron", 1.0)
    with pytest.raises(ValueError, match="policy"):
        metrics.drift("ignore")
    with pytest.raises(ValueError, match="negative"):
        metrics.observe_reconcile("poll", 1.0, applied=-1)


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(process=False), Metrics(process=False)
    one.fetch_error()
    one.set_leader(True)
    assert one.registry.get_sample_value("modelops_agent_git_fetch_errors_total") == 1
    assert two.registry.get_sample_value("modelops_agent_git_fetch_errors_total") == 0
    assert two.registry.get_sample_value("modelops_agent_leader") == 0
    one.set_leader(False)
    assert one.registry.get_sample_value("modelops_agent_leader") == 0


# ---------------------------------------------------------------- lifecycle


def http_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t is not threading.main_thread()}


def test_stop_leaves_no_thread_and_no_port(state: State) -> None:
    before = http_threads()
    srv = HttpServer(health=state.health, ready=state.readiness, metrics=Metrics(), request_timeout=30)
    srv.start()
    port = srv.port
    assert port > 0
    assert get(srv.url + "/healthz")[0] == 200
    # an idle client and a client halfway through its request each hold a request thread
    idle = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    half = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    half.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n")
    deadline = time.monotonic() + TIMEOUT
    while len(http_threads() - before) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(http_threads() - before) >= 3  # the serving thread and two request threads
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3  # not the 30 s request timeout
    assert http_threads() - before == set()
    for conn in (idle, half):
        # closed: an orderly end, or a reset when the server closed with our bytes unread
        with contextlib.suppress(ConnectionResetError):
            assert conn.recv(100) == b""
        conn.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    srv.stop()  # a second stop is a no-op


def test_start_stop_rules(state: State) -> None:
    srv = HttpServer(health=state.health, ready=state.readiness)
    srv.stop()  # before start: nothing to do
    with pytest.raises(RuntimeError):
        _ = srv.port
    with srv, HttpServer(health=state.health, ready=state.readiness) as other:
        assert srv.port != other.port
        with pytest.raises(RuntimeError):
            srv.start()
    with pytest.raises(RuntimeError):
        _ = srv.port


def test_a_taken_port_fails_start(server: HttpServer, state: State) -> None:
    with pytest.raises(OSError):
        HttpServer(port=server.port, health=state.health, ready=state.readiness).start()


def test_an_idle_client_is_dropped_after_the_read_timeout(state: State) -> None:
    with HttpServer(health=state.health, ready=state.readiness, request_timeout=0.3) as srv:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as conn:
            assert conn.recv(100) == b""
        assert time.monotonic() - started < 3


def test_a_trickling_client_is_cut_at_the_deadline(state: State) -> None:
    """Each byte comes within the read timeout, but the whole request may not take longer than
    request_deadline."""
    with HttpServer(health=state.health, ready=state.readiness, request_timeout=5, request_deadline=0.5) as srv:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\n")
            cut = False
            while time.monotonic() - started < 4:
                try:
                    conn.sendall(b"X-A: b\r\n")
                except OSError:
                    cut = True
                    break
                time.sleep(0.1)
                conn.setblocking(False)
                try:
                    if conn.recv(100) == b"":
                        cut = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    conn.setblocking(True)
                    conn.settimeout(TIMEOUT)
        assert cut
        assert time.monotonic() - started < 3


def test_connections_over_the_cap_are_refused(state: State) -> None:
    with HttpServer(health=state.health, ready=state.readiness, max_connections=2, request_timeout=10) as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) for _ in range(2)]
        time.sleep(0.2)
        try:
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                urllib.request.urlopen(srv.url + "/healthz", timeout=TIMEOUT)
        finally:
            for conn in held:
                conn.close()
        deadline = time.monotonic() + TIMEOUT
        while True:  # the held connections' threads see EOF and end
            try:
                assert get(srv.url + "/healthz")[0] == 200
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_nothing_is_written_to_stderr(server: HttpServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.controller.http")
    get(server.url + "/healthz")
    get(server.url + "/nope")
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"BREW /pot HTTP/1.0\r\n\r\n")
        answer = conn.recv(1000)
    assert answer.startswith(b"HTTP/1.0 501")
    assert capfd.readouterr().err == ""
    assert '"GET /healthz HTTP/1.1" 200' in caplog.text
    assert '"GET /nope HTTP/1.1" 404' in caplog.text


def test_ipv6_loopback(state: State) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with HttpServer("::1", 0, health=state.health, ready=state.readiness) as srv:
        assert srv.url.startswith("http://[::1]:")
        assert get(srv.url + "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:9090", ("localhost", 9090)),
        ("[::]:8080", ("::", 8080)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_parse_http_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_http_addr(addr) == expected


@pytest.mark.parametrize("addr", ["8080", "host", "host:", "host:65536", "::1:80", "[::1]", "a:b:c", "host:-1"])
def test_parse_http_addr_refuses(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_http_addr(addr)
