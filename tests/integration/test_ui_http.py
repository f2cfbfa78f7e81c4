"""The web UI of a real controller on the local control plane, with Debian's Prometheus: the
pages answer behind the auth file (401 without the token), the overview follows a real canary
rollout step by step through the polling answers (no reload), the model page of the model under
the rollout shows its steps and a chart of the new and the stable version drawn from Prometheus'
range API, a hostile commit message renders as text, and the audit page says the chain holds."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.controller import Controller, RunConfig
from devenv.cluster import PrometheusInfo, prometheus_reload
from tests.integration._model_server import ModelServer
from tests.integration._repos import GIT
from tests.integration.conftest import wait_until
from tests.integration.test_rollout import rollout_repo

pytestmark = pytest.mark.integration

TOKEN = "ui-integration-token-5f1c"
EVIL = "<img src=x onerror=alert(1)> scorer 2 as a canary"


def fetch(url: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
            return answer.status, dict(answer.headers.items()), answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read().decode()


@pytest.fixture
def ui(tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo) -> Iterator[tuple[Controller, str]]:
    ns = "ui-rollout"
    work, bare = rollout_repo(tmp_path / "repo", ns, steps=[20, 50, 100], interval="8s")
    subprocess.run([*GIT, "commit", "-q", "--amend", "-m", EVIL], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "--force", str(bare), "main"], cwd=work, check=True)
    server = ModelServer(ns, "scorer")
    server.track("1", "stable", error_rate=0.0, rps=20.0)
    server.track("2", "canary", error_rate=0.01, rps=20.0)
    prometheus_reload(prometheus, [server.target])
    auth = tmp_path / "ui-auth.yaml"
    auth.write_text(f"token: {TOKEN}\n")
    config = RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                       http_addr="127.0.0.1:0", cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl",
                       prometheus_url=prometheus.url, ui_auth_file=auth)
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        http = wait_until(lambda: controller.http, "the controller's HTTP server", 30)
        assert http.ui_url is not None
        yield controller, http.ui_url
    finally:
        controller.stop()
        thread.join(timeout=30)
        server.close()
        assert not thread.is_alive()


def row_traffic(page: str) -> str | None:
    row = re.search(r'<tr data-model="ui-rollout/scorer"[^>]*>(.*?)</tr>', page, re.S)
    cell = re.search(r'<td data-field="traffic"><span class="traffic">([^<]*)</span>', row.group(1)) if row else None
    return cell.group(1) if cell else None


def check_model_page(url: str) -> None:
    """The model page during the rollout: its steps, its timeline, a chart from Prometheus."""
    status, _, page = fetch(url + "/models/ui-rollout/scorer?target=ui-rollout")
    assert status == 200
    for said in ("Progressing", "step 1 · 20%", "step 2 · 50%", "step 3 · 100%", "started", "advanced", "error-rate"):
        assert said in page, said
    assert EVIL not in page

    def charted() -> str | None:
        text = fetch(url + "/models/ui-rollout/scorer?target=ui-rollout")[2]
        return text if re.search(r'<path data-series="new" class="line series-new" d="M', text) else None
    page = wait_until(charted, "the chart's new series from Prometheus", 15)
    assert re.search(r'<path data-series="stable" class="line series-stable" d="M', page)


def test_the_ui_follows_a_real_rollout(ui: tuple[Controller, str]) -> None:
    _controller, url = ui
    status, headers, body = fetch(url + "/", token=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and TOKEN not in body
    assert fetch(url + "/", token="wrong")[0] == 401

    # the overview, then each change through the polling answers, as app.js asks for them
    def listed() -> str | None:
        text = fetch(url + "/")[2]
        return text if row_traffic(text) else None
    page = wait_until(listed, "the model on the overview", 60)
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    generation = int(re.search(r'<main id="main" data-generation="([0-9]+)"', page).group(1))  # type: ignore[union-attr]
    seen = [row_traffic(page)]
    checked_model = False
    deadline = time.monotonic() + 120
    while "100% 2" not in (seen[-1] or "") and time.monotonic() < deadline:
        status, headers, fragment = fetch(url + f"/?fragment=1&since={generation}")
        if status == 204:
            continue
        assert status == 200 and "<html" not in fragment
        generation = int(headers["X-Board-Generation"])
        traffic = row_traffic(fragment)
        if traffic != seen[-1]:
            seen.append(traffic)
        if traffic == "50% 1 / 50% 2" and not checked_model:  # under the rollout, at its second step
            checked_model = True
            check_model_page(url)
    steps = [t for t in seen if t and "/" in t]
    assert "80% 1 / 20% 2" in steps and "50% 1 / 50% 2" in steps, seen
    assert steps.index("80% 1 / 20% 2") < steps.index("50% 1 / 50% 2")
    assert checked_model and "100% 2" in (seen[-1] or ""), seen

    audit = fetch(url + "/audit")[2]
    assert "Chain verified" in audit and "page 1 of" in audit
    assert EVIL not in audit
    assert fetch(url + "/healthz", token=None)[0] == 200  # the probes need no token
