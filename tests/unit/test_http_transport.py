"""agent._http.Transport, the seam the forge, Prometheus and MLflow clients share, on its own.

Against a scripted server on 127.0.0.1: redirects refused, timeouts, the body cap, GET retries
on 502/503/504 (and on connection failures only when asked), secrets scrubbed, userinfo never
used or shown, and a private CA file for https (a self-signed certificate made with openssl).
The clients' own wording is tested in test_forge.py, test_prometheus_client.py and
test_mlflow_client.py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent._http import Reply, Transport, TransportError, without_userinfo

SECRET = "tr4nsport-s3cr3t"


class Script:
    """What the server answers, in order (the last one repeats), and what it was asked."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = [(200, {}, b"{}")]
        self.asked: list[tuple[str, str, dict[str, str], bytes]] = []

    def then(self, status: int, body: bytes = b"", **headers: str) -> Script:
        self.answers.append((status, headers, body))
        return self


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.script.asked.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length)))
        answers = self.script.answers
        status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, Script]:
    script = Script()
    script.answers.clear()
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # refused handshakes are expected
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, script


@pytest.fixture
def served() -> Iterator[tuple[str, Script]]:
    server, script = _serve()
    yield f"http://127.0.0.1:{server.server_address[1]}/base", script
    server.shutdown()
    server.server_close()


def transport(url: str, **kw: Any) -> tuple[Transport, list[float]]:
    slept: list[float] = []
    t = Transport(url, **{"timeout": 2.0, **kw})
    t.sleep = slept.append
    return t, slept


def test_a_path_is_sent_below_the_base_with_the_headers(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(200, b'{"ok": true}', **{"X-Next": "1"})
    t, _ = transport(url + "/", headers={"Authorization": f"Bearer {SECRET}"})
    reply = t.send("POST", "/api/x?q=1", body=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.status, reply.body, reply.headers["X-Next"]) == (200, b'{"ok": true}', "1")
    method, path, headers, body = script.asked[0]
    assert (method, path, body) == ("POST", "/base/api/x?q=1", b"a=1")
    assert headers["authorization"] == f"Bearer {SECRET}" and headers["user-agent"] == "modelops-agent"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/x-www-form-urlencoded"


def test_an_error_status_is_a_reply_with_its_body(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(404, b'{"message": "Not Found"}')
    reply = transport(url)[0].send("GET", "/x", retries=(0.1,))
    assert isinstance(reply, Reply) and (reply.status, reply.body) == (404, b'{"message": "Not Found"}')
    assert len(script.asked) == 1  # a 404 is an answer, not retried


def test_a_redirect_is_refused_and_its_location_scrubbed(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(302, Location=f"http://elsewhere.example/?token={SECRET}")
    t, _ = transport(url, headers={"Authorization": f"Bearer {SECRET}"}, secrets=[SECRET])
    with pytest.raises(TransportError) as err:
        t.send("GET", "/x", retries=(0.1,))
    assert (err.value.kind, err.value.status) == ("redirect", 302)
    assert err.value.location == "http://elsewhere.example/?token=***"
    assert SECRET not in str(err.value) and "redirect to" in str(err.value)
    assert len(script.asked) == 1


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel accepts; nobody answers
        t, slept = transport(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"no answer within 0\.5s") as err:
            t.send("GET", "/x", retries=(0.1, 0.1), retry_unreachable=True)
        assert err.value.kind == "timeout" and slept == []  # a timeout is not retried
        assert time.monotonic() - started < 2.0


def test_the_body_cap(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(200, b"x" * 10).then(201, b"x" * 11)
    t, _ = transport(url, max_body=10)
    assert t.send("GET", "/x").body == b"x" * 10
    with pytest.raises(TransportError, match="answer larger than 10 bytes") as err:
        t.send("GET", "/x")
    assert (err.value.kind, err.value.status) == ("too-large", 201)


def test_a_get_is_retried_on_503_then_answers(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(503, b"busy").then(502).then(200, b"{}")
    t, slept = transport(url)
    assert t.send("GET", "/x", retries=(0.2, 0.6)).status == 200
    assert slept == [0.2, 0.6] and len(script.asked) == 3


def test_retries_end_with_the_last_answer_and_a_write_is_sent_once(served: tuple[str, Script]) -> None:
    url, script = served
    script.then(503, b"still busy")
    t, slept = transport(url)
    assert t.send("GET", "/x", retries=(0.2, 0.6)).body == b"still busy"
    assert len(script.asked) == 3 and slept == [0.2, 0.6]
    assert t.send("POST", "/x", body=b"{}", retries=(0.2, 0.6)).status == 503
    assert len(script.asked) == 4 and len(slept) == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_is_retried_only_when_asked() -> None:
    t, slept = transport(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(TransportError) as err:
        t.send("GET", "/x", retries=(0.2, 0.6))
    assert err.value.kind == "unreachable" and slept == []
    with pytest.raises(TransportError):
        t.send("GET", "/x", retries=(0.2, 0.6), retry_unreachable=True)
    assert slept == [0.2, 0.6]


def test_userinfo_is_neither_used_nor_shown_and_secrets_are_scrubbed() -> None:
    port = _closed_port()
    t, _ = transport(f"http://alice:{SECRET}@127.0.0.1:{port}/p/", secrets=[SECRET, None, ""])
    assert t.base == f"http://127.0.0.1:{port}/p"
    assert t.scrub(f"token {SECRET}!") == "token ***!"
    assert without_userinfo(f"https://u:{SECRET}@h/x") == "https://h/x"
    for bad in (f"ftp://u:{SECRET}@h/x", f"http://u:{SECRET}@h:port/x", "http:///nohost"):
        with pytest.raises(TransportError) as err:
            Transport(bad, timeout=1.0)
        assert err.value.kind == "config" and SECRET not in str(err.value)
    assert Transport("http://[::1]:8080/x", timeout=1.0).base == "http://[::1]:8080/x"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return d


def test_https_uses_the_ca_file(self_signed: Path, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed / "cert.pem", self_signed / "key.pem")
    server, script = _serve(context)
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        script.then(200, b"{}")
        with pytest.raises(TransportError) as err:
            transport(url)[0].send("GET", "/x", retries=(0.1,), retry_unreachable=True)
        assert err.value.kind == "certificate"
        assert transport(url, ca_file=self_signed / "cert.pem")[0].send("GET", "/x").status == 200
    finally:
        server.shutdown()
        server.server_close()
    (tmp_path / "bad.pem").write_text("not a certificate")
    for ca in (tmp_path / "bad.pem", tmp_path / "missing.pem"):
        with pytest.raises(TransportError, match="cannot use CA file") as err:
            Transport(url, timeout=1.0, ca_file=ca)
        assert err.value.kind == "config"
    Transport(url.replace("https", "http"), timeout=1.0, ca_file=tmp_path / "missing.pem")  # not read for http
