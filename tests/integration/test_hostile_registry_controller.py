"""The controller and a hostile MLflow, on the local control plane: an answer that breaks the
rules (a URI the artifact rule refuses, a version that could forge an annotation) or a 500 that
echoes the token never reaches the cluster; the last good state stays served, the error names the
value escaped, and neither the error, the logs, the audit log nor /readyz?verbose holds the token
in any encoding. A fake MLflow is right here: no real one answers these."""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import Cluster
from agent.controller import RunConfig
from tests._hostile import TOKEN, FakeMlflow, assert_no_secret, serve_mlflow, shown
from tests.integration._forge_repos import alias_repo
from tests.integration._repos import GIT
from tests.integration.conftest import running

pytestmark = pytest.mark.integration


def storage_uri(kubeconfig: Path, namespace: str) -> Any:
    with Cluster.connect(str(kubeconfig)) as cluster:
        obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", namespace)
    return None if obj is None else obj["spec"]["predictor"]["model"]["storageUri"]


def readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz?verbose", timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as err:
        with err:
            return str(err.read().decode())


def test_hostile_answers_never_reach_the_cluster_nor_the_token_any_output(
        tmp_path: Path, kubeconfig: Path, wait_for: Callable[..., None], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import subprocess

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    fake = FakeMlflow(version="7", download_uri="s3://models/scorer/7")
    ns = f"hostile-{uuid.uuid4().hex[:6]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with serve_mlflow(fake) as url:
        work = alias_repo(tmp_path / "repo", url, "fraud-scorer", namespace=ns, target=ns)
        bare = tmp_path / "remote.git"
        subprocess.run([*GIT, "clone", "-q", "--bare", str(work), str(bare)], check=True)
        audit = tmp_path / "audit.jsonl"
        config = RunConfig(repo=f"file://{bare}", interval=600.0, resync=600.0, kubeconfig=str(kubeconfig),
                           http_addr=f"127.0.0.1:{port}", cache_dir=tmp_path / "mirrors", audit_log=audit,
                           registry_interval=0.3)
        with running(config) as controller:
            wait_for(lambda: storage_uri(kubeconfig, ns) == "s3://models/scorer/7", "the first apply", timeout=60)

            hostile: list[tuple[str, str]] = [("uri", "s3://b/x\nkind: Secret"), ("uri", "$(id)"),
                                              ("uri", "file:///etc/passwd"), ("version", "7=8@a/b#c"),
                                              ("version", "8\nkind: Secret")]
            for what, value in hostile:
                if what == "uri":
                    fake.download_uri = fake.source = value
                else:
                    fake.version = value
                wait_for(lambda v=value: shown(v) in controller.registry_error, f"the refused {what} {value!r}",
                         timeout=30)
                assert url in controller.registry_error and "mlflow fraud-scorer@champion" in controller.registry_error
                assert storage_uri(kubeconfig, ns) == "s3://models/scorer/7"  # the last good state stays
                fake.version, fake.download_uri = "7", "s3://models/scorer/7"

            fake.echo_500 = True  # now every answer echoes the Authorization header, encoded every way
            wait_for(lambda: "echo: Authorization: Bearer ***" in controller.registry_error, "the echoed 500",
                     timeout=30)
            assert_no_secret(controller.registry_error)
            assert_no_secret(readyz(port))

            fake.echo_500 = False  # a good move again: served, so the refusals above were not a hang
            fake.version, fake.download_uri = "8", "s3://models/scorer/8"
            wait_for(lambda: storage_uri(kubeconfig, ns) == "s3://models/scorer/8", "the next good answer", timeout=60)
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    assert records, "the audit log has the applies"
    text = audit.read_text()
    for _, value in hostile:
        assert json.dumps(value)[1:-1] not in text  # no hostile value was ever recorded as applied
    assert_no_secret(text)
    assert_no_secret(caplog.text)
    assert "echo: Authorization: Bearer ***" in caplog.text  # the error was logged, masked
