"""Issue 20, "Must show": the web UI of `agent run` in a real headless Chromium (Debian's,
driven by Playwright: tests/integration/_browser.py).

A real controller (`running`) follows a bare git remote and applies to the session's local
cluster; Debian's Prometheus scrapes tests/integration/_model_server.py, which plays the stable
and canary versions of the rolled-out model, so the rollout's steps are judged on real queries.
The browser then sees: the overview's traffic for that model move from 10% to 50% without a
reload, the model page's chart with the new version's series, the pages complete with
JavaScript off, and (its own repo) every string from Git that may carry HTML or JS rendered
as text, with no script run. Screenshots of the overview and the model page go to the test's
directory, and to docs/screenshots/ with UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from agent.cluster import Cluster
from agent.controller import Controller, RunConfig
from devenv.cluster import PrometheusInfo, prometheus_reload
from tests.integration._browser import PageWatch, browser_fixture, screenshot  # noqa: F401 - the `browser` fixture
from tests.integration._model_server import ModelServer
from tests.integration._repos import GIT
from tests.integration.conftest import running, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytestmark = pytest.mark.integration

API = "modelops.dev/v1alpha1"
FRAUD, SEARCH, XSS = "ui-fraud", "ui-search", "ui-xss"  # namespaces of the session's cluster, one test each
ROLLED = "fraud-scorer"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
XSS_MESSAGE = "<img src=x onerror=alert(1)>"
HOLD = 45.0  # seconds fraud-scorer's first step holds: its chart then spans a minute (the model page's screenshot)


def runtime(name: str, image: str, formats: list[str]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": name},
            "spec": {"image": image, "formats": formats, "port": 8080}}


def model(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def versions(name: str, *numbers: str, auc: float = 0.91) -> list[dict[str, Any]]:
    return [{"version": v, "uri": f"s3://models/{name}/{v}/", "evaluation": {"auc": round(auc + i / 100, 3)}}
            for i, v in enumerate(numbers)]


def demo_docs() -> dict[str, list[dict[str, Any]]]:
    """Four models in two namespaces: fraud-scorer rolls 2 out over 10% / 50% / 100%, gated by its
    Monitor's error rate; query-ranker splits replicas 75/25 with a fixed canary; two serve alone."""
    rollout = {"strategy": "canary", "steps": [10, 50, 100], "interval": "20s",
               "analysis": {"rules": ["error-rate"], "minRequests": 5}, "maxFailedChecks": 1, "onSuccess": "none"}
    gates = [{"metric": "auc", "min": 0.85}]
    return {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": "ui-demo"},
                       "spec": {"policy": {"allowedNamespaces": [FRAUD, SEARCH]}}}],
        "infra/namespaces.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                                  for ns in (FRAUD, SEARCH)],
        "runtimes/sklearn.yaml": [runtime("sklearn-server", "docker.io/kserve/sklearnserver:v0.14.1", ["sklearn"])],
        "runtimes/fastapi.yaml": [runtime("fastapi-server", "ghcr.io/acme/fastapi-model-server:2.3.0",
                                          ["sklearn", "onnx"])],
        f"models/{FRAUD}/{ROLLED}.yaml": [
            model(FRAUD, ROLLED, format="sklearn", runtime="sklearn-server", backend="kserve", owner="fraud@acme.example",
                  versions=versions(ROLLED, "1", "2"), stable="1", canary={"version": "2"}, rollout=rollout,
                  gates=gates, replicas=1),
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": ROLLED, "namespace": FRAUD},
             "spec": {"model": ROLLED, "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                   "action": "rollback"}]}}],
        f"models/{FRAUD}/chargeback-risk.yaml": [
            model(FRAUD, "chargeback-risk", format="sklearn", runtime="fastapi-server", backend="kubernetes",
                  owner="fraud@acme.example", versions=versions("chargeback-risk", "3", "4"), stable="4", gates=gates,
                  replicas=1)],
        f"models/{SEARCH}/query-ranker.yaml": [
            model(SEARCH, "query-ranker", format="onnx", runtime="fastapi-server", backend="kubernetes",
                  owner="search@acme.example", versions=versions("query-ranker", "6", "7"), stable="6",
                  canary={"version": "7", "traffic": 25}, gates=gates, replicas=4)],
        f"models/{SEARCH}/embedder.yaml": [
            model(SEARCH, "embedder", format="onnx", runtime="fastapi-server", backend="kubernetes",
                  owner="search@acme.example", versions=versions("embedder", "12"), stable="12", replicas=1)],
    }


def write_repo(root: Path, docs: dict[str, list[dict[str, Any]]], message: str) -> tuple[Path, Path]:
    """A working clone committing `docs` with `message`, and its bare remote (pushed)."""
    work, bare = root / "work", root / "remote.git"
    work.mkdir(parents=True)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=work, check=True)
    commit(work, docs, message)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=work, check=True)
    return work, bare


def commit(work: Path, docs: dict[str, list[dict[str, Any]]], message: str, push: bool = False) -> None:
    for rel, content in docs.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=work, check=True)
    if push:
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True, capture_output=True)


def ui_config(tmp_path: Path, bare: Path, kubeconfig: Path, prometheus: PrometheusInfo | None) -> RunConfig:
    return RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                     http_addr="127.0.0.1:0", ui=True, cache_dir=tmp_path / "mirrors",
                     audit_log=tmp_path / "audit.jsonl", prometheus_url=prometheus.url if prometheus else None)


def ui_url(controller: Controller) -> str:
    """The UI's base URL once the controller's HTTP server is up and its first pass published."""
    wait_until(lambda: getattr(controller, "http", None) is not None and controller.ready, "the controller ready", 90)
    assert controller.http is not None
    return str(controller.http.url)


def canary_traffic(kubeconfig: Path, namespace: str, name: str) -> Any:
    with Cluster.connect(str(kubeconfig)) as cluster:
        obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), name, namespace)
    return None if obj is None else obj["spec"]["predictor"].get("canaryTrafficPercent")


def traffic_cell(page: Page, key: str) -> Any:
    return page.locator(f'tr[data-model="{key}"] [data-field="traffic"]')


def series_points(page: Page, series: str) -> int:
    """How many points the chart's path of `series` draws (0 when there is none)."""
    path = page.locator(f'svg.chart path[data-series="{series}"]')
    if path.count() == 0:
        return 0
    d = path.first.get_attribute("d") or ""
    return len(re.findall(r"[-\d.]+[ ,][-\d.]+", d))


@pytest.fixture
def fraud_server(prometheus: PrometheusInfo) -> Iterator[ModelServer]:
    """fraud-scorer's versions for Prometheus to scrape: stable 1 at 20 requests/s with 1% errors,
    canary 2 barely served (2 requests a step: its first step holds, not judged, until the test
    lets traffic in) with none."""
    server = ModelServer(FRAUD, ROLLED)
    server.track("1", "stable", error_rate=0.01, latency=0.08, rps=20.0)
    server.track("2", "canary", error_rate=0.0, latency=0.04, rps=0.1)
    prometheus_reload(prometheus, [server.target])
    try:
        yield server
    finally:
        server.close()


def test_a_rollout_seen_in_the_browser(tmp_path: Path, kubeconfig: Path, prometheus: PrometheusInfo,
                                       fraud_server: ModelServer, browser: Browser) -> None:
    _work, bare = write_repo(tmp_path / "repo", demo_docs(), "fraud-scorer 2: canary rollout 10% → 50% → 100%")
    key = f"{FRAUD}/{ROLLED}"
    with running(ui_config(tmp_path, bare, kubeconfig, prometheus)) as controller:
        url = ui_url(controller)
        wait_until(lambda: canary_traffic(kubeconfig, FRAUD, ROLLED) == 10, "the first step (10%)", 90)
        started = time.monotonic()
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            watch = PageWatch(page)
            page.goto(f"{url}/")
            expect = _expect()
            expect(traffic_cell(page, key)).to_contain_text("10%", timeout=30_000)
            assert page.locator("tr[data-model]").count() == 4
            page.evaluate("() => { window.__sameDocument = 'yes'; }")  # gone if the page were reloaded
            # the page waits for news (the first step holds: too few requests), then the canary
            # serves, the step is judged and passes; by then the rollout has a minute of metrics
            time.sleep(max(0.0, started + HOLD - time.monotonic()))
            fraud_server.set("2", rps=20.0)
            expect(traffic_cell(page, key)).to_contain_text("50%", timeout=60_000)
            assert page.evaluate("() => window.__sameDocument") == "yes"
            assert watch.navigations == [f"{url}/"], watch.navigations  # one navigation: no reload
            assert watch.problems() == []
            expect(page.locator(f'tr[data-model="{key}"] [data-field="synced"]')).to_contain_text(
                "Synced", timeout=15_000)
            screenshot(page, "ui-overview", tmp_path)
            pages_without_javascript(browser, url, key)  # while the rollout runs

            # the model page: the new version's series drawn from Prometheus' range query
            page.goto(f"{url}/models/{FRAUD}/{ROLLED}")
            deadline = time.monotonic() + 30
            while series_points(page, "new") < 2 and time.monotonic() < deadline:
                time.sleep(2)  # the chart is cached a few seconds; the canary's series grows each scrape
                page.reload()
            assert series_points(page, "new") >= 2, page.locator("svg.chart").first.inner_html()
            assert page.locator('svg.chart path[data-series="stable"]').count() >= 1
            assert watch.problems() == []
            screenshot(page, "ui-model", tmp_path)
        finally:
            context.close()


def pages_without_javascript(browser: Browser, url: str, key: str) -> None:
    """With JavaScript off the server-rendered pages carry everything: the rows, the traffic,
    the model page's rollout and its chart."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{url}/")
        assert page.locator("tr[data-model]").count() == 4
        assert re.search(r"\d+% 1 / \d+% 2", traffic_cell(page, key).inner_text())
        assert "query-ranker" in page.locator(f'tr[data-model="{SEARCH}/query-ranker"]').inner_text()
        page.goto(f"{url}/models/{key}")
        main = page.locator("main").inner_text()
        assert ROLLED in main and "Rollout" in main and re.search(r"step [23]/3", main), main[:2000]
        assert page.locator('svg.chart path[data-series="new"]').count() >= 1
    finally:
        context.close()


def xss_docs(env_note: str) -> dict[str, list[dict[str, Any]]]:
    """One model whose every free-text field carries markup: its name can only carry '-' (a
    DNS-1035 label: schemas/_defs.schema.json), the rest takes what the schema allows."""
    probe = model(XSS, "x--probe--1", format="sklearn", runtime="fastapi-server", backend="kubernetes",
                  owner='<script>alert("owner")</script> & "quoted" \'single\'',
                  formatVersion='"><svg onload=alert(5)>',
                  versions=[{"version": "1", "uri": "https://models.example/<svg/onload=alert(3)>/x",
                             "evaluation": {"auc": 0.93}}],
                  stable="1", replicas=1, env={"NOTE": env_note})
    probe["metadata"]["annotations"] = {"modelops.dev/note": "<img src=x onerror=alert(2)>"}
    return {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": "ui-xss"},
                       "spec": {"policy": {"allowedNamespaces": [XSS]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": XSS}}],
        "runtimes/fastapi.yaml": [runtime("fastapi-server", "ghcr.io/acme/fastapi-model-server:2.3.0", ["sklearn"])],
        "models/probe.yaml": [probe],
    }


def test_markup_from_git_renders_as_text_and_no_script_runs(
        tmp_path: Path, kubeconfig: Path, browser: Browser) -> None:
    work, bare = write_repo(tmp_path / "repo", xss_docs("</script><script>alert(6)</script>"), "probe: first")
    key = f"{XSS}/x--probe--1"
    with running(ui_config(tmp_path, bare, kubeconfig, None)) as controller:
        url = ui_url(controller)
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            watch = PageWatch(page)
            page.goto(f"{url}/")
            expect = _expect()
            expect(page.locator(f'tr[data-model="{key}"]')).to_be_visible(timeout=30_000)
            # a commit whose message is markup, taken in by the page's own update (no reload) ...
            commit(work, xss_docs("'\"><img src=x onerror=alert(8)>"), XSS_MESSAGE, push=True)
            expect(page.locator("main")).to_contain_text(XSS_MESSAGE, timeout=60_000)
            assert watch.navigations == [f"{url}/"]
            assert_inert(page, watch, "/ (updated in place)")
            # ... and as the server renders it
            page.reload()
            expect(page.locator("main")).to_contain_text(XSS_MESSAGE)
            page.goto(f"{url}/models/{XSS}/x--probe--1")
            expect(page.locator("main")).to_contain_text("x--probe--1")
            expect(page.locator("main")).to_contain_text(XSS_MESSAGE)  # the deployment history
            expect(page.locator("main")).to_contain_text("https://models.example/<svg/onload=alert(3)>/x")
            for path in ("/", f"/models/{XSS}/x--probe--1", "/audit"):
                page.goto(f"{url}{path}")
                page.wait_for_load_state("load")
                assert_inert(page, watch, path)
                screenshot(page, f"markup-{path.strip('/').split('/')[0] or 'overview'}", tmp_path, docs=False)
            assert not [u for u in watch.requests if not u.startswith(url)]  # nothing fetched from elsewhere
            assert not [u for u in watch.requests if u.rstrip("/").endswith("/x")]  # no <img src=x> loaded
        finally:
            context.close()


def assert_inert(page: Page, watch: PageWatch, where: str) -> None:
    """No element that markup from Git could have brought (an inline script, an event handler,
    the probes' <img src=x>, a frame) is in the page, and nothing ran or was blocked."""
    injected = page.evaluate("""() => [
        ...document.querySelectorAll('script:not([src]), script[src]:not([src^="/static/"]), '
            + '[onerror], [onload], img[src="x"], iframe, object, embed')
    ].map((e) => e.outerHTML)""")
    assert injected == [], (where, injected)
    assert watch.problems() == [], (where, watch.problems())


def _expect() -> Any:
    """Playwright's `expect`, imported once the browser fixture has checked Playwright is there."""
    from playwright.sync_api import expect

    return expect
