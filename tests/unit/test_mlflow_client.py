"""agent.registry.MlflowRegistry against canned MLflow REST answers.

Contract tests of the response shapes MLflow 3.x's REST API has (model-versions/get,
registered-models/alias, model-versions/get-download-uri, runs/get; errors as
{"error_code", "message"}) and of the client's own rules (timeouts, bearer token sent and never
echoed, redirects refused, retries on 503). The real server is tested in
tests/integration/test_mlflow_env.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.engine import registries_for
from agent.errors import AgentError
from agent.registry import MlflowRegistry, RegistryError, ResolvedVersion

TOKEN = "mlflow-s3cr3t-token"
RUN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
API = "/api/2.0/mlflow"


def _version(version: str = "13", *, run_id: str | None = RUN, source: str | None = None,
             status: str = "READY", aliases: list[str] | None = None) -> dict[str, Any]:
    """A model_version as MLflow 3.x's REST API answers it (proto3 JSON: empty fields left out)."""
    mv: dict[str, Any] = {"name": "fraud-scorer", "version": version, "creation_timestamp": 1764340000000,
                          "last_updated_timestamp": 1764340000000, "current_stage": "None", "description": "",
                          "source": source or f"runs:/{run_id}/model", "status": status,
                          "aliases": aliases or [], "tags": [{"key": "team", "value": "risk"}]}
    if run_id is not None:
        mv["run_id"] = run_id
        mv["run_link"] = ""
    return mv


def _run(metrics: dict[str, float]) -> dict[str, Any]:
    return {"run": {"info": {"run_id": RUN, "run_uuid": RUN, "experiment_id": "1", "status": "FINISHED",
                             "artifact_uri": f"s3://mlflow/1/{RUN}/artifacts", "lifecycle_stage": "active"},
                    "data": {"metrics": [{"key": k, "value": v, "timestamp": 1764340000000, "step": 3}
                                         for k, v in metrics.items()],
                             "params": [{"key": "lr", "value": "0.1"}], "tags": []},
                    "inputs": {}, "outputs": {}}}


@dataclass
class Fake:
    """Canned answers by API path (after /api/2.0/mlflow): (status, JSON or bytes)."""

    routes: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def on(self, path: str, status: int, body: Any) -> None:
        self.routes.setdefault(path, []).append((status, body))

    def queries(self, path: str) -> list[dict[str, str]]:
        return [r["query"] for r in self.requests if r["path"] == path]


@pytest.fixture
def fake() -> Iterator[tuple[str, Fake]]:
    fake = Fake()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            path = parts.path.removeprefix("/prefix").removeprefix(API)
            fake.requests.append({"path": path, "query": dict(urllib.parse.parse_qsl(parts.query)),
                                  "headers": {k.lower(): v for k, v in self.headers.items()}})
            answers = fake.routes.get(path)
            if answers:
                status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            else:
                status, body = 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", "http://elsewhere.example/")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _serve_version(fake: Fake, mv: dict[str, Any], metrics: dict[str, float] | None = None,
                   download_uri: str | None = None) -> None:
    fake.on("/model-versions/get", 200, {"model_version": mv})
    fake.on("/registered-models/alias", 200, {"model_version": mv})
    fake.on("/model-versions/get-download-uri", 200, {"artifact_uri": download_uri or mv["source"]})
    fake.on("/runs/get", 200, _run(metrics or {}))


def test_resolve_by_version(fake: tuple[str, Fake]) -> None:
    url, f = fake
    _serve_version(f, _version("13"), {"auc": 0.93, "latency_ms": 12.5})
    resolved = MlflowRegistry(url).resolve("fraud-scorer", version="13")
    # a runs:/ source is served from where the run stores it (its artifact location)
    assert resolved == ResolvedVersion(registry="mlflow", name="fraud-scorer", version="13",
                                       uri=f"s3://mlflow/1/{RUN}/artifacts/model", run_id=RUN, digest=None, alias=None,
                                       metrics={"auc": 0.93, "latency_ms": 12.5})
    assert f.queries("/model-versions/get") == [{"name": "fraud-scorer", "version": "13"}]
    assert f.queries("/model-versions/get-download-uri") == [{"name": "fraud-scorer", "version": "13"}]
    assert f.queries("/runs/get") == [{"run_id": RUN}]


def test_resolve_by_alias_names_the_alias_and_the_version_it_points_to(fake: tuple[str, Fake]) -> None:
    url, f = fake
    _serve_version(f, _version("7", aliases=["champion"]), {"auc": 0.9})
    resolved = MlflowRegistry(url).resolve("fraud-scorer", alias="champion")
    assert (resolved.version, resolved.alias, resolved.metrics) == ("7", "champion", {"auc": 0.9})
    assert f.queries("/registered-models/alias") == [{"name": "fraud-scorer", "alias": "champion"}]
    assert f.queries("/model-versions/get-download-uri") == [{"name": "fraud-scorer", "version": "7"}]


def test_the_same_answer_is_resolved_from_the_details_cache(fake: tuple[str, Fake]) -> None:
    """A long-lived caller's re-resolution that gets the same answer asks only the alias."""
    url, f = fake
    cache: dict = {}
    _serve_version(f, _version("7", aliases=["champion"]), {"auc": 0.9})
    first = MlflowRegistry(url, details=cache).resolve("fraud-scorer", alias="champion")
    again = MlflowRegistry(url, details=cache).resolve("fraud-scorer", alias="champion")
    assert again == first and again.metrics == {"auc": 0.9}
    assert len(f.queries("/registered-models/alias")) == 2
    assert len(f.queries("/model-versions/get-download-uri")) == 1 and len(f.queries("/runs/get")) == 1


def test_a_moved_alias_or_a_running_run_is_asked_afresh(fake: tuple[str, Fake]) -> None:
    url, f = fake
    cache: dict = {}
    registry = MlflowRegistry(url, details=cache)
    running = _run({"auc": 0.5})
    running["run"]["info"]["status"] = "RUNNING"
    f.on("/registered-models/alias", 200, {"model_version": _version("7")})
    f.on("/registered-models/alias", 200, {"model_version": _version("7")})
    f.on("/registered-models/alias", 200, {"model_version": _version("8")})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": "s3://m/7"})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": "s3://m/7"})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": "s3://m/8"})
    f.on("/runs/get", 200, running)
    f.on("/runs/get", 200, _run({"auc": 0.6}))
    f.on("/runs/get", 200, _run({"auc": 0.95}))
    assert registry.resolve("fraud-scorer", alias="champion").metrics == {"auc": 0.5}  # still running
    assert registry.resolve("fraud-scorer", alias="champion").metrics == {"auc": 0.6}  # asked again, now final
    moved = registry.resolve("fraud-scorer", alias="champion")
    assert (moved.version, moved.uri, moved.metrics) == ("8", "s3://m/8", {"auc": 0.95})
    assert len(f.queries("/runs/get")) == 3


def test_logged_model_source_resolves_to_its_storage_location(fake: tuple[str, Fake]) -> None:
    url, f = fake
    _serve_version(f, _version("2", source="models:/m-0123456789abcdef"),
                   download_uri="s3://bucket/1/models/m-0123456789abcdef/artifacts")
    assert MlflowRegistry(url).resolve("fraud-scorer", version="2").uri == \
        "s3://bucket/1/models/m-0123456789abcdef/artifacts"


def test_version_without_run_has_no_metrics(fake: tuple[str, Fake]) -> None:
    url, f = fake
    _serve_version(f, _version("1", run_id=None, source="s3://bucket/plain/1"))
    resolved = MlflowRegistry(url).resolve("fraud-scorer", version="1")
    assert (resolved.uri, resolved.run_id, resolved.metrics) == ("s3://bucket/plain/1", None, {})
    assert f.queries("/runs/get") == []


def test_metrics_skip_nan_and_keep_the_latest(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 200, {"model_version": _version("3")})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": "s3://b/3"})
    f.on("/runs/get", 200, b'{"run": {"info": {}, "data": {"metrics": [{"key": "auc", "value": 0.5},'
                           b' {"key": "loss", "value": NaN}, {"key": "bad", "value": "x"}]}}}')
    assert MlflowRegistry(url).resolve("fraud-scorer", version="3").metrics == {"auc": 0.5}


def test_not_found_names_the_reference_and_the_registry(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                      "message": "Model Version (name=fraud-scorer, version=99) not found"})
    f.on("/registered-models/alias", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                           "message": "Registered model alias nope not found."})
    registry = MlflowRegistry(url)
    with pytest.raises(RegistryError) as err:
        registry.resolve("fraud-scorer", version="99")
    text = str(err.value)
    assert isinstance(err.value, AgentError)
    assert url in text and "'fraud-scorer' version 99" in text and "not found" in text
    assert "HTTP 404: RESOURCE_DOES_NOT_EXIST" in text
    with pytest.raises(RegistryError, match=r"'fraud-scorer' alias 'nope'.*not found"):
        registry.resolve("fraud-scorer", alias="nope")


def test_missing_run_is_an_error_naming_it(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 200, {"model_version": _version("13")})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": f"runs:/{RUN}/model"})
    f.on("/runs/get", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run '{RUN}' not found"})
    with pytest.raises(RegistryError, match=f"version 13: run {RUN}.*not found"):
        MlflowRegistry(url).resolve("fraud-scorer", version="13")


def test_version_not_ready_is_an_error(fake: tuple[str, Fake]) -> None:
    url, f = fake
    mv = _version("4", status="FAILED_REGISTRATION")
    mv["status_message"] = "copy failed"
    f.on("/model-versions/get", 200, {"model_version": mv})
    with pytest.raises(RegistryError, match='"FAILED_REGISTRATION", not READY: "copy failed"'):
        MlflowRegistry(url).resolve("fraud-scorer", version="4")


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b"[]", {"something": "else"}])
def test_unusable_answers_are_errors(fake: tuple[str, Fake], body: Any) -> None:
    url, f = fake
    f.on("/model-versions/get", 200, body)
    with pytest.raises(RegistryError, match="fraud-scorer"):
        MlflowRegistry(url).resolve("fraud-scorer", version="1")


def test_exactly_one_of_version_or_alias() -> None:
    registry = MlflowRegistry("http://127.0.0.1:1")
    with pytest.raises(RegistryError, match="exactly one"):
        registry.resolve("m")
    with pytest.raises(RegistryError, match="exactly one"):
        registry.resolve("m", version="1", alias="champion")


def test_token_is_sent_as_bearer_and_never_echoed(fake: tuple[str, Fake]) -> None:
    url, f = fake
    _serve_version(f, _version("13"))
    MlflowRegistry(url, token=TOKEN).resolve("fraud-scorer", version="13")
    assert {r["headers"].get("authorization") for r in f.requests} == {f"Bearer {TOKEN}"}
    f.routes.clear()
    f.on("/model-versions/get", 403, {"error_code": "PERMISSION_DENIED", "message": f"bad token {TOKEN}"})
    registry = MlflowRegistry(url, token=TOKEN)
    with pytest.raises(RegistryError) as err:
        registry.resolve("fraud-scorer", version="13")
    assert TOKEN not in str(err.value) and "PERMISSION_DENIED" in str(err.value)
    assert TOKEN not in repr(registry)


def test_userinfo_is_basic_auth_and_never_shown(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "nope"})
    with_userinfo = url.replace("http://", "http://alice:pw-s3cr3t@") + "/prefix/"
    with pytest.raises(RegistryError) as err:
        MlflowRegistry(with_userinfo).resolve("fraud-scorer", version="1")
    assert "pw-s3cr3t" not in str(err.value) and "alice" not in str(err.value)
    assert f"{url}/prefix" in str(err.value)
    assert f.requests[0]["headers"]["authorization"].startswith("Basic ")


def test_mlflow_username_and_password_variables_are_basic_auth(fake: tuple[str, Fake],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent honours MLflow's own MLFLOW_TRACKING_USERNAME/PASSWORD (no token set)."""
    import base64

    from agent.spec import RepositoryConfig, Spec

    url, f = fake
    f.on("/model-versions/get", 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "nope"})
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-s3cr3t")
    registry = registries_for(Spec(config=RepositoryConfig(name="t")), ".")["mlflow"]
    with pytest.raises(RegistryError) as err:
        registry.resolve("fraud-scorer", version="1")
    assert "pw-s3cr3t" not in str(err.value)
    expected = "Basic " + base64.b64encode(b"alice:pw-s3cr3t").decode()
    assert f.requests[0]["headers"]["authorization"] == expected


def test_not_http_is_refused_without_its_credentials() -> None:
    with pytest.raises(RegistryError) as err:
        MlflowRegistry("databricks://user:s3cr3t@workspace")
    assert "s3cr3t" not in str(err.value)


def test_redirect_is_refused(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 302, b"")
    with pytest.raises(RegistryError, match=r"redirect to 'http://elsewhere\.example/' refused"):
        MlflowRegistry(url, token=TOKEN).resolve("fraud-scorer", version="1")
    assert len(f.requests) == 1


def test_503_is_retried(fake: tuple[str, Fake]) -> None:
    url, f = fake
    f.on("/model-versions/get", 503, b"busy")
    f.on("/model-versions/get", 200, {"model_version": _version("1", run_id=None, source="s3://b/1")})
    f.on("/model-versions/get-download-uri", 200, {"artifact_uri": "s3://b/1"})
    assert MlflowRegistry(url).resolve("fraud-scorer", version="1").version == "1"
    assert len(f.queries("/model-versions/get")) == 2


def test_server_that_never_answers_fails_within_the_timeout() -> None:
    """A listening socket nobody accepts from: the connection is made, no answer ever comes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(RegistryError, match=r"'fraud-scorer' version 1.*no answer within 0.5s"):
            MlflowRegistry(url, token=TOKEN, timeout=0.5).resolve("fraud-scorer", version="1")
        assert time.monotonic() - start < 2.0


def test_nothing_listening_is_an_error_naming_the_registry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RegistryError, match=rf"^cannot connect to MLflow at http://127\.0\.0\.1:{port}: "
                                            r"connection refused \(model 'm' alias 'a'\)$"):
        MlflowRegistry(f"http://127.0.0.1:{port}", timeout=1.0).resolve("m", alias="a")
