"""Register models in a real MLflow server through its REST API (the way a training pipeline
does, minus the `mlflow` package): experiment, run with metrics, registered model, versions
whose source is the run's model, aliases."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

_API = "/api/2.0/mlflow"


def call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + _API + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10.0) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        with err:
            raise AssertionError(f"{method} {path}: HTTP {err.code}: {err.read()[:500]!r}") from None
    doc = json.loads(raw) if raw.strip() else {}
    assert isinstance(doc, dict)
    return doc


def experiment(url: str, name: str) -> str:
    """An experiment whose runs store their artifacts on S3 (a location a serving runtime can
    pull, unlike the server's proxied `mlflow-artifacts:/`); nothing is written there."""
    return str(call(url, "POST", "/experiments/create",
                    {"name": name, "artifact_location": f"s3://mlflow-test/{name}"})["experiment_id"])


def stored(url: str, run_id: str, path: str = "model") -> str:
    """Where `runs:/<run_id>/<path>` is stored (the run's artifact location joined with the
    path): the storageUri the agent serves for a version of that source."""
    location = call(url, "GET", f"/runs/get?run_id={run_id}")["run"]["info"]["artifact_uri"]
    return f"{str(location).rstrip('/')}/{path}"


def run(url: str, experiment_id: str, metrics: dict[str, list[float]]) -> str:
    """A finished run that logged each metric's values in order (the last is the latest)."""
    now = int(time.time() * 1000)
    run_id = str(call(url, "POST", "/runs/create", {"experiment_id": experiment_id, "start_time": now})
                 ["run"]["info"]["run_id"])
    for key, values in metrics.items():
        for step, value in enumerate(values):
            call(url, "POST", "/runs/log-metric",
                 {"run_id": run_id, "key": key, "value": value, "timestamp": now + step, "step": step})
    call(url, "POST", "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now + 1000})
    return run_id


def registered_model(url: str, name: str) -> None:
    call(url, "POST", "/registered-models/create", {"name": name})


def model_version(url: str, name: str, source: str, run_id: str | None = None, model_id: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "source": source}
    if run_id is not None:
        body["run_id"] = run_id
    if model_id is not None:
        body["model_id"] = model_id
    return str(call(url, "POST", "/model-versions/create", body)["model_version"]["version"])


def set_alias(url: str, name: str, alias: str, version: str) -> None:
    call(url, "POST", "/registered-models/alias", {"name": name, "alias": alias, "version": version})


def logged_model(url: str, experiment_id: str, run_id: str) -> tuple[str, str]:
    """An MLflow 3 logged model of run_id: (model_id, its artifact location)."""
    info = call(url, "POST", "/logged-models", {"experiment_id": experiment_id, "name": "model",
                                                 "source_run_id": run_id})["model"]["info"]
    return str(info["model_id"]), str(info["artifact_uri"])
