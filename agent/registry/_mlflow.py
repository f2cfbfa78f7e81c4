"""The agent's MLflow Model Registry client: a registered model's version or alias resolved to
the immutable version, its artifact URI (the version's storage location: its `source`, for a
`models:/` source the logged model's artifact location, for a `runs:/<run>/<path>` source the
run's artifact location joined with the path) and its run's metrics, over MLflow's REST API.
The answer is checked like a Git repo's values before it is used (agent.registry._answer): the
storage location must pass the artifact URI rule, a pinned version must come back as itself.

Standard library only, over agent._http's transport (shared with agent.metrics_source and
agent.forge): four read-only GETs do not need the `mlflow` package and its dependencies. Every
request has a timeout; redirects are refused (they would carry the credentials to whatever
host they name); GETs are retried twice on 502/503/504; every failure is a RegistryError
naming the tracking URL (scheme, host, path: never userinfo or token), the reference and
MLflow's own error_code and message, with the credentials scrubbed from anything echoed back.

Endpoints (MLflow 3.x, the same since 2.3):
  GET /api/2.0/mlflow/model-versions/get?name=N&version=V       -> {"model_version": {...}}
  GET /api/2.0/mlflow/registered-models/alias?name=N&alias=A    -> {"model_version": {...}}
  GET /api/2.0/mlflow/model-versions/get-download-uri?name=N&version=V -> {"artifact_uri": ...}
  GET /api/2.0/mlflow/runs/get?run_id=R                          -> {"run": {"data": {"metrics": [...]}}}
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent._http import RETRY_DELAYS, Transport, TransportError, without_userinfo
from agent.errors import escaped
from agent.registry._answer import check_answer, check_run_id, check_version
from agent.registry._base import RegistryError, ResolvedVersion

__all__ = ["MlflowRegistry"]

MAX_BODY = 16 * 1024 * 1024
_API = "/api/2.0/mlflow"
_FINAL_RUN = frozenset({"FINISHED", "FAILED", "KILLED"})
DETAILS_MAX = 1024

# (server, name, version, last update, run id) -> (storage URI, the run's final metrics)
DetailsCache = dict[tuple[str, str, str, str, str], tuple[str, dict[str, float]]]


# MLflow numbers a model's versions 1, 2, 3...
_VERSION_RULE: dict[str, Any] = {"version": re.compile(r"[1-9][0-9]{0,18}"),
                                 "version_rule": "a positive integer, as MLflow numbers versions"}


@dataclass(frozen=True)
class _Run:
    metrics: dict[str, float]
    final: bool  # the run has ended: its metrics will not change
    artifact_uri: str  # the run's artifact location ("" when the answer has none)


def _reference(name: str, version: str | None, alias: str | None) -> str:
    if version is not None:
        return f"model {name!r} version {version}"
    return f"model {name!r} alias {alias!r}"


class MlflowRegistry:
    """One MLflow tracking server (or a proxy path prefix in front of one) at tracking_uri.

    Credentials: `token` is sent as `Authorization: Bearer` (MLFLOW_TRACKING_TOKEN); else
    user:password in the URI, or `basic` (MLFLOW_TRACKING_USERNAME/PASSWORD), is sent as Basic
    auth (MLflow's basic-auth app). Neither is ever part of an error. `ca_file`: a private CA
    (MLFLOW_TRACKING_SERVER_CERT_PATH)."""

    def __init__(self, tracking_uri: str, *, token: str | None = None, timeout: float = 10.0,
                 ca_file: str | Path | None = None, details: DetailsCache | None = None,
                 basic: tuple[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Shown as given minus userinfo: the scheme is the problem, the URI the context.
            raise RegistryError(f"MLflow tracking URI must be http(s)://host[:port][/path], "
                                f"not {without_userinfo(tracking_uri)!r}")
        self.timeout = timeout
        # What a version's answer leads to (its storage URI, its ended run's metrics), keyed by
        # the answer itself: a re-resolution that gets the same answer costs the one lookup GET,
        # and a moved alias or a version MLflow changed is asked afresh. A long-lived caller
        # (the controller) passes the same dict to each new client; bounded, oldest out first.
        self._details: DetailsCache = {} if details is None else details
        secrets = [token, parts.password]
        auth: dict[str, str] = {}
        if token:
            auth["Authorization"] = f"Bearer {token}"
        elif parts.username is not None or basic is not None:
            if parts.username is not None:
                user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
            else:
                assert basic is not None
                user, password = basic
            auth["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            secrets.append(password)
        try:
            self._http = Transport(tracking_uri, timeout=timeout, ca_file=ca_file, headers=auth, secrets=secrets,
                                   max_body=MAX_BODY)
        except TransportError as err:
            raise RegistryError(f"MLflow {without_userinfo(tracking_uri)}: {err}") from None
        self.url = self._http.base  # shown in errors and repr: no userinfo, no token

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.url!r})"

    # --- API ------------------------------------------------------------------------------------

    def resolve(self, name: str, *, version: str | None = None, alias: str | None = None) -> ResolvedVersion:
        """The model version `version` of registered model `name`, or the one its alias points
        to now; with the run's latest metrics (none for a version created without a run).

        A version that is not READY (registration pending or failed) is an error: there is
        nothing to serve yet."""
        if not name:
            raise RegistryError(f"MLflow {self.url}: a model reference needs a registered model name")
        if (version is None) == (alias is None):
            raise RegistryError(f"MLflow {self.url}: model {name!r}: name exactly one of version or alias")
        ref = _reference(name, version, alias)
        if version is not None:
            doc = self._get("/model-versions/get", {"name": name, "version": str(version)}, ref)
        else:
            doc = self._get("/registered-models/alias", {"name": name, "alias": str(alias)}, ref)
        mv = doc.get("model_version")
        if not isinstance(mv, dict):
            raise RegistryError(f"MLflow {self.url}: {ref}: the answer has no model_version")
        resolved_version = mv.get("version")
        if not isinstance(resolved_version, str | int) or isinstance(resolved_version, bool) or \
                str(resolved_version) == "":
            raise RegistryError(f"MLflow {self.url}: {ref}: the answer has no version")
        where = f"MLflow {self.url}: {ref}"
        pinned = None if version is None else str(version)
        resolved_version = check_version(str(resolved_version), where, pinned=pinned, **_VERSION_RULE)
        status = mv.get("status", "READY")
        if status != "READY":
            why = mv.get("status_message") or ""
            raise RegistryError(f"MLflow {self.url}: {ref} (version {resolved_version}) is "
                                f"{escaped(str(status))}, not READY" + (f": {escaped(str(why), 200)}" if why else ""))
        run_id = mv.get("run_id") or None
        if run_id is not None:
            run_id = check_run_id(run_id, where)
        # the answer's own name is not used: the reference's name is what was asked for
        key = (self.url, name, str(resolved_version), str(mv.get("last_updated_timestamp", "")), run_id or "")
        hit = self._details.get(key)
        if hit is not None:
            uri, metrics = hit[0], dict(hit[1])
        else:
            found = self._download_uri(key[1], key[2], ref) or mv.get("source")
            if not isinstance(found, str) or not found:
                raise RegistryError(f"MLflow {self.url}: {ref} (version {resolved_version}) has no source")
            run = self._run(run_id, ref) if run_id else None
            metrics, final = (run.metrics, run.final) if run is not None else ({}, True)
            uri = self._storage(found, run_id, run, f"{where} (version {resolved_version})")
            if final:  # a running run may log more: asked again next time
                if len(self._details) >= DETAILS_MAX:
                    self._details.pop(next(iter(self._details)), None)
                self._details[key] = (uri, dict(metrics))
        resolved = ResolvedVersion(registry="mlflow", name=name, version=str(resolved_version), uri=uri,
                                   run_id=run_id, digest=None, alias=alias, metrics=metrics)
        return check_answer(resolved, where, pinned=pinned, **_VERSION_RULE)

    def _storage(self, found: str, run_id: str | None, run: _Run | None, where: str) -> str:
        """Where a `runs:/<run>/<path>` source is stored: the run's artifact location joined
        with the path, as MLflow's own client resolves it; any other source as it is."""
        if not found.startswith("runs:/"):
            return found
        source_run, _, path = found[len("runs:/"):].partition("/")
        source_run = check_run_id(source_run, where)
        if run is None or source_run != run_id:
            run = self._run(source_run, where)
        if not run.artifact_uri:
            raise RegistryError(f"{where}: run {source_run} has no artifact location, so {escaped(found)} "
                                "names no storage")
        path = path.strip("/")
        return run.artifact_uri.rstrip("/") + (f"/{path}" if path else "")

    def _download_uri(self, name: str, version: str, ref: str) -> str | None:
        """The version's storage location: where a `models:/m-...` source (a logged model) really
        is; the source itself for others. MLflow keeps it in the database but not in the
        model_version answer."""
        doc = self._get("/model-versions/get-download-uri", {"name": name, "version": version},
                        f"{ref} (version {version})")
        uri = doc.get("artifact_uri")
        return uri if isinstance(uri, str) and uri else None

    def _run(self, run_id: str, ref: str) -> _Run:
        """The run's latest value of each metric (runs/get returns the latest per key), whether
        the run has ended (its metrics are final) and its artifact location."""
        doc = self._get("/runs/get", {"run_id": run_id}, f"{ref}: run {run_id}")
        run = doc.get("run")
        data = run.get("data") if isinstance(run, dict) else None
        if not isinstance(data, dict):
            raise RegistryError(f"MLflow {self.url}: {ref}: run {run_id}: the answer has no run data")
        metrics: dict[str, float] = {}
        raw = data.get("metrics") or []
        if not isinstance(raw, list):
            raise RegistryError(f"MLflow {self.url}: {ref}: run {run_id}: metrics is not a list")
        # NaN is left out (a gate on it then finds no recorded value: an error); ±Infinity is
        # kept, and the gate evaluation refuses it by name and value (an ungated one is dropped).
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                continue
            try:
                value = float(entry.get("value"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if not math.isnan(value):
                metrics[entry["key"]] = value
        info = run.get("info") if isinstance(run, dict) else None
        final = isinstance(info, dict) and info.get("status") in _FINAL_RUN
        location = info.get("artifact_uri") if isinstance(info, dict) else None
        return _Run(metrics, final, location if isinstance(location, str) else "")

    # --- HTTP -----------------------------------------------------------------------------------

    def _get(self, path: str, query: Mapping[str, str], ref: str) -> dict[str, Any]:
        """GET one API path; its JSON object, else RegistryError naming the reference."""
        where = f"MLflow {self.url}: {ref}: GET {_API}{path}"
        try:
            reply = self._http.send("GET", f"{_API}{path}?{urllib.parse.urlencode(query)}", retries=RETRY_DELAYS)
        except TransportError as err:
            if err.kind == "redirect":
                raise RegistryError(f"{where} failed: HTTP {err.status}: redirect to {err.location!r} refused") from None
            if err.kind == "unreachable":
                raise RegistryError(f"cannot connect to MLflow at {self.url}: {err} ({ref})") from None
            prefix = f"HTTP {err.status}: " if err.kind == "too-large" else ""
            raise RegistryError(f"{where}: {prefix}{err}") from None
        raw, status = reply.body, reply.status
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except ValueError:
            doc = None
        if status >= 300:
            if isinstance(doc, dict):
                code, message = str(doc.get("error_code") or ""), str(doc.get("message") or "(no message)")
            else:
                code, message = "", _first_line(raw)
            what = "not found" if code == "RESOURCE_DOES_NOT_EXIST" else "failed"
            detail = f"{code}: {message[:500]}" if code else message[:500]
            raise RegistryError(self._http.scrub(f"{where} {what}: HTTP {status}: {detail}"))
        if not isinstance(doc, dict):
            raise RegistryError(self._http.scrub(f"{where}: HTTP {status}: not an MLflow API answer: {_first_line(raw)}"))
        return doc


def _first_line(raw: bytes) -> str:
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:200] if lines else "(empty body)"
