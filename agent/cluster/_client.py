"""The only module that talks to the API server.

Reads are raw JSON (`_preload_content=False` style: we never build typed models, ~8x faster);
server-side apply goes through the official dynamic client. Every request is counted by verb
so benchmarks and tests can assert how many reads and writes a reconcile made.

Every request has a connect and a read timeout and a retry budget (`Timeouts`), and all
requests share one circuit breaker: once the server has given no answer at all for a while,
every further request fails at once instead of waiting out its own timeouts and retries.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from agent.cluster._kinds import KindInfo, well_known
from agent.errors import AgentError, plain_reason

FIELD_MANAGER = "modelops-agent"
UNREACHABLE = 0  # status of a ClusterError when no HTTP answer came back
RETRYABLE = frozenset({UNREACHABLE, 409, 429, 500, 502, 503, 504})
T = TypeVar("T")


class ClusterError(AgentError):
    """An API request failed; carries the HTTP status and the server's message."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        prefix = f"HTTP {status}{' ' + reason if reason else ''}: " if status else ""
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Timeouts:
    """How long one request may take (connect, read) and how long it may keep retrying.

    Defaults can be set by the environment (AGENT_CONNECT_TIMEOUT, AGENT_REQUEST_TIMEOUT,
    AGENT_RETRY_BUDGET, in seconds) and overridden by command-line flags."""

    connect: float = 5.0
    read: float = 20.0
    budget: float = 60.0  # seconds one request may spend on retries, its attempts included

    @classmethod
    def from_env(cls, connect: float | None = None, read: float | None = None,
                 budget: float | None = None) -> Timeouts:
        def pick(value: float | None, env: str, default: float) -> float:
            if value is not None:
                chosen = value
            else:
                raw = os.environ.get(env)
                try:
                    chosen = float(raw) if raw else default
                except ValueError as exc:
                    raise AgentError(f"{env}={raw!r} is not a number of seconds") from exc
            if not chosen > 0:
                raise AgentError(f"{env.lower().replace('_', '-')}: timeouts must be positive seconds, got {chosen}")
            return chosen

        return cls(pick(connect, "AGENT_CONNECT_TIMEOUT", cls.connect),
                   pick(read, "AGENT_REQUEST_TIMEOUT", cls.read),
                   pick(budget, "AGENT_RETRY_BUDGET", cls.budget))


class Breaker:
    """Circuit breaker over transport failures (no HTTP answer: refused, reset, timed out).

    It opens when `threshold` requests in a row got no answer and the oldest of them started
    at least `window` seconds ago: the server is gone, not blinking. While open, requests fail
    at once; after `cooldown` seconds one request may probe again (a success closes it)."""

    def __init__(self, threshold: int = 3, window: float = 5.0, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.window, self.cooldown, self.clock = threshold, window, cooldown, clock
        self._lock = threading.Lock()
        self._failures = 0
        self._since: float | None = None  # start time of the oldest failed request in the streak
        self._open_until: float | None = None
        self.last_error = ""

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None and self.clock() < self._open_until

    @property
    def down(self) -> str:
        """Why the server looks gone ("" once a request got an answer): `threshold` requests in a
        row without one, whatever made them (a write, a watch); read without a request."""
        with self._lock:
            if self._failures < self.threshold:
                return ""
            return f"{self._failures} requests in a row got no answer (last: {self.last_error})"

    def check(self, host: str) -> None:
        with self._lock:
            if self._open_until is None:
                return
            if self.clock() < self._open_until:
                raise ClusterError(UNREACHABLE, f"giving up on the API server at {host}: {self._failures} requests "
                                   f"in a row got no answer (last: {self.last_error})")
            self._open_until = self.clock() + self.cooldown  # half-open: this request probes

    def success(self) -> None:
        with self._lock:
            self._failures, self._since, self._open_until = 0, None, None

    def failure(self, started: float, message: str) -> None:
        with self._lock:
            self._failures += 1
            self.last_error = message
            self._since = started if self._since is None else min(self._since, started)
            if self._failures >= self.threshold and self.clock() - self._since >= self.window:
                self._open_until = self.clock() + self.cooldown


def _error(exc: ApiException) -> ClusterError:
    message, reason = str(exc.reason or ""), ""
    try:
        body = json.loads(exc.body or "{}")
        message, reason = body.get("message", message), body.get("reason", "")
    except (ValueError, TypeError):
        pass
    return ClusterError(int(exc.status or 0), message, reason)


class _NoDiscovery:
    """The dynamic client's discoverer, replaced: we address every resource from our own kind
    table, so the dynamic client needs no discovery round trips and writes no discovery cache
    file to /tmp (its default discoverer does both on construction)."""

    def __init__(self, client: Any, cache_file: Any) -> None:
        self.client = client


class Cluster:
    """A connection to one API server, counting requests by HTTP verb."""

    def __init__(self, api_client: k8s.ApiClient, *, retries: int = 5, backoff: float = 0.2,
                 timeouts: Timeouts | None = None, breaker: Breaker | None = None) -> None:
        self.api = api_client
        self.retries = retries
        self.backoff = backoff
        self.timeouts = timeouts or Timeouts.from_env()
        self.breaker = breaker or Breaker()
        self.requests: Counter[str] = Counter()
        # (apiVersion, kind) this identity may not LIST across all namespaces (a 403 was seen):
        # listed per managed namespace from then on, without asking again
        self.namespace_scoped: set[tuple[str, str]] = set()
        self._lock = threading.RLock()
        self._dynamic: DynamicClient | None = None
        self._kinds: dict[tuple[str, str], KindInfo] = {}

    def count(self, method: str, url: str) -> None:
        """Count one request by verb. Every request the agent sends goes through `request`,
        `apply` or the watch, and each counts itself here (no patching of the client)."""
        verb = "WATCH" if "watch=true" in url else method.upper() + (" (dry-run)" if "dryRun=All" in url else "")
        with self._lock:
            self.requests[verb] += 1

    # --- connection -----------------------------------------------------------------------
    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None, pool: int = 16,
                timeouts: Timeouts | None = None) -> Cluster:
        """Credentials as kubectl finds them: --kubeconfig, else $KUBECONFIG (a list of files
        joined by the path separator), else ~/.kube/config; the in-cluster service account only
        when none of these is configured at all. A kubeconfig that is named but missing or
        broken is an error naming it, never a silent fall-back to in-cluster."""
        configuration = k8s.Configuration()
        if kubeconfig:
            where, files = f"--kubeconfig {kubeconfig}", [kubeconfig]
        elif os.environ.get("KUBECONFIG"):
            raw = os.environ["KUBECONFIG"]
            where, files = f"KUBECONFIG={raw}", [f for f in raw.split(os.pathsep) if f]
        elif os.path.exists(os.path.expanduser("~/.kube/config")):
            where, files = "~/.kube/config", [os.path.expanduser("~/.kube/config")]
        else:
            where, files = "", []
        try:
            if files:
                paths = [os.path.expanduser(f) for f in files]
                if not any(os.path.isfile(f) for f in paths):
                    missing = ", ".join(paths)
                    raise AgentError(f"cannot load cluster credentials: kubeconfig {missing} ({where}): "
                                     "no such file")
                k8s_config.load_kube_config(config_file=os.pathsep.join(paths), context=context,
                                            client_configuration=configuration)
            elif context:
                raise AgentError(f"cannot load cluster credentials: --context {context} needs a kubeconfig "
                                 "(--kubeconfig, $KUBECONFIG or ~/.kube/config; none exists)")
            else:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                except k8s_config.ConfigException as exc:
                    raise AgentError(
                        "cannot load cluster credentials: no kubeconfig (--kubeconfig, $KUBECONFIG and "
                        f"~/.kube/config all absent) and not running in a cluster ({exc})") from exc
        except (k8s_config.ConfigException, OSError) as exc:
            raise AgentError(f"cannot load cluster credentials from {where or 'the in-cluster config'}: {exc}") from exc
        configuration.connection_pool_maxsize = pool
        configuration.retries = 0  # retries are ours (budget + breaker), not urllib3's silent ones
        return cls(k8s.ApiClient(configuration), timeouts=timeouts)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writes(self) -> int:
        """Requests that change state (a dry-run PATCH is counted apart, as "PATCH (dry-run)")."""
        return sum(n for verb, n in self.requests.items() if verb in ("POST", "PUT", "PATCH", "DELETE"))

    # --- raw requests ---------------------------------------------------------------------
    def _retry(self, call: Callable[[], T], retries: int | None = None) -> T:
        """Run call() with backoff on retryable errors, within the retry budget; every attempt
        first asks the breaker, and tells it whether the server answered."""
        delay = self.backoff
        limit = self.retries if retries is None else retries
        deadline = time.monotonic() + self.timeouts.budget
        attempt = 0
        while True:
            self.breaker.check(self.host)
            started = time.monotonic()
            try:
                result = call()
            except ClusterError as exc:
                if exc.status == UNREACHABLE:
                    self.breaker.failure(started, str(exc))
                    self.breaker.check(self.host)  # just opened: say so, not this attempt's error
                else:
                    self.breaker.success()
                # a 409 is worth retrying only for optimistic-concurrency races, never for an
                # apply conflict with another field manager or an AlreadyExists
                race = exc.status != 409 or "has been modified" in str(exc)
                out_of_budget = attempt >= limit or time.monotonic() + delay > deadline
                if exc.status not in RETRYABLE or not race or out_of_budget:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                attempt += 1
            else:
                self.breaker.success()
                return result

    @property
    def _timeout(self) -> tuple[float, float]:
        return (self.timeouts.connect, self.timeouts.read)

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: Any = None, content_type: str = "application/json", retries: int | None = None,
                timeout: tuple[float, float] | None = None) -> Any:
        """One HTTP request; the JSON response as plain data (None for an empty body)."""
        url_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}

        def call() -> Any:
            serialized = self.api.param_serialize(method, url_path, header_params=headers, body=body,
                                                  auth_settings=["BearerToken"])
            self.count(method, url_path)
            try:
                response = self.api.call_api(*serialized, _request_timeout=timeout or self._timeout)
            except ApiException as exc:
                raise _error(exc) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise self._unreachable(exc) from exc
            data = response.read()
            if not 200 <= response.status <= 299:
                try:
                    payload = json.loads(data or b"{}")
                except ValueError:
                    payload = {}
                raise ClusterError(response.status, payload.get("message", data.decode(errors="replace")), payload.get("reason", ""))
            return json.loads(data) if data else None

        return self._retry(call, retries)

    def _unreachable(self, exc: Exception) -> ClusterError:
        """In words: `connection refused`, `name or service not known`, a timeout; never urllib3's
        `HTTPSConnection(host=...): ... [Errno 111] ...` (NewConnectionError is a TimeoutError there)."""
        reason = getattr(exc, "reason", None) or exc
        timed_out = not isinstance(reason, urllib3.exceptions.NewConnectionError) and (
            isinstance(exc, urllib3.exceptions.TimeoutError) or isinstance(reason, urllib3.exceptions.TimeoutError))
        why = (f"no answer within {self.timeouts.read:g} s (read) / {self.timeouts.connect:g} s (connect)" if timed_out
               else plain_reason(reason))
        return ClusterError(UNREACHABLE, f"cannot reach the API server at {self.host}: {why}")

    # --- kinds ----------------------------------------------------------------------------
    def kind(self, api_version: str, kind: str) -> KindInfo:
        key = (api_version, kind)
        info = self._kinds.get(key) or well_known(api_version, kind)
        if info is None:
            group_path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.request("GET", group_path)
            except ClusterError as exc:
                raise AgentError(f"{api_version} is not served by the cluster ({exc})") from exc
            for resource in listing.get("resources", []):
                if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                    info = KindInfo(api_version, kind, resource["name"], bool(resource.get("namespaced")))
                    break
            if info is None:
                raise AgentError(f"kind {kind} is not served by the cluster in {api_version}")
        self._kinds[key] = info
        return info

    def info_of(self, obj: dict[str, Any]) -> KindInfo:
        return self.kind(str(obj["apiVersion"]), str(obj["kind"]))

    # --- reads ----------------------------------------------------------------------------
    def list(self, info: KindInfo, label_selector: str, namespace: str | None = None, page: int = 500) -> Iterator[dict[str, Any]]:
        """All objects of a kind matching a label selector, as raw dicts (paged)."""
        query = {"labelSelector": label_selector, "limit": str(page)}
        while True:
            try:
                data = self.request("GET", info.collection_path(namespace), query=query)
            except ClusterError as exc:
                if exc.status == 404:  # CRD not installed: nothing of that kind exists
                    return
                raise
            for item in data.get("items", []):
                item.setdefault("apiVersion", info.api_version)
                item.setdefault("kind", info.kind)
                yield item
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return
            query = {**query, "continue": token}

    def get(self, info: KindInfo, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.request("GET", info.object_path(name, namespace))
            return obj
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    # --- writes ---------------------------------------------------------------------------
    @property
    def dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dynamic is None:
                self._dynamic = DynamicClient(self.api, discoverer=_NoDiscovery)
            return self._dynamic

    def apply(self, obj: dict[str, Any], *, force: bool, dry_run: bool = False,
              field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply through the dynamic client's request path; the response is parsed
        as plain JSON (no ResourceInstance wrapping) and the URL comes from our kind table, so
        an apply needs no discovery round trips."""
        info = self.info_of(obj)
        meta = obj["metadata"]
        path = info.object_path(meta["name"], meta.get("namespace") if info.namespaced else None)

        def call() -> dict[str, Any]:
            self.count("PATCH", path + ("?dryRun=All" if dry_run else ""))
            try:
                response = self.dynamic.request(
                    "patch", path, body=obj, content_type="application/apply-patch+yaml",
                    field_manager=field_manager, force_conflicts=force,
                    dry_run="All" if dry_run else None, serialize=False, _request_timeout=self._timeout,
                )
            except ApiException as exc:
                raise _error(exc) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise self._unreachable(exc) from exc
            out: dict[str, Any] = json.loads(response.data)
            return out

        return self._retry(call)

    def delete(self, obj: dict[str, Any]) -> None:
        """Delete exactly this object: the uid precondition protects a same-named newcomer."""
        info = self.info_of(obj)
        meta = obj["metadata"]
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if meta.get("uid"):
            body["preconditions"] = {"uid": meta["uid"]}
        try:
            self.request("DELETE", info.object_path(meta["name"], meta.get("namespace") if info.namespaced else None), body=body)
        except ClusterError as exc:
            if exc.status != 404:
                raise

    def create(self, info: KindInfo, obj: dict[str, Any], namespace: str | None = None, *,
               make_namespace: bool = False) -> dict[str, Any]:
        """POST obj; with make_namespace, a missing namespace (404) is created first (the agent's
        own bookkeeping namespace on a fresh cluster), then the POST is sent again."""
        path = info.collection_path(namespace)
        try:
            out: dict[str, Any] = self.request("POST", path, body=obj)
        except ClusterError as exc:
            if not (make_namespace and namespace and exc.status == 404):
                raise
            ns = self.kind("v1", "Namespace")
            try:
                self.request("POST", ns.collection_path(), body={"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": namespace}})
            except ClusterError as again:
                if again.status != 409:  # created meanwhile: fine
                    raise
            out = self.request("POST", path, body=obj)
        return out

    def replace(self, info: KindInfo, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        out: dict[str, Any] = self.request("PUT", info.object_path(meta["name"], meta.get("namespace")), body=obj)
        return out
