"""WATCH: one streaming request whose events are yielded as they arrive.

The cache (agent.cache) keeps live objects current with one watch per kind instead of
re-LISTing them, so it needs a request that stays open for minutes and can still be ended
from another thread at once: a thread blocked reading the stream is woken by shutting the
socket down (urllib3's `HTTPResponse.shutdown`), not by waiting for the server.

Counting: a watch counts itself once in `cluster.requests` as "WATCH" (never as a GET), so "how
many reads did a resync make" is not blurred by the long-running watches.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes.client.exceptions import ApiException

from agent.cluster._client import Cluster, ClusterError, _error
from agent.cluster._kinds import KindInfo

WATCH_VERB = "WATCH"  # the label of a watch in Cluster.requests
READ_GRACE = 15.0  # the client's read timeout exceeds the server's timeoutSeconds by this much
_CLOSER_POLL = 0.2  # how often the closer thread checks whether the watch ended by itself
# (setting `stop` wakes it at once: this only bounds how long a finished watch waits for it)
_CHUNK = 64 * 1024


def watch(cluster: Cluster, info: KindInfo, label_selector: str, resource_version: str,
          timeout_seconds: int, stop: threading.Event, namespace: str | None = None) -> Iterator[dict[str, Any]]:
    """Raw watch events ({"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}) of
    one kind in every namespace (or in `namespace` only), from `resource_version` on ("" = from
    now, with a synthetic ADDED per existing object), until the server ends the watch after
    `timeout_seconds`, the stream breaks, or `stop` is set (then it returns at once, even from
    a blocked read).

    ERROR events (e.g. code 410: the resourceVersion is too old, relist) are yielded, not
    raised: what to do about them is the caller's decision. An HTTP error status raises
    ClusterError; no answer at all raises ClusterError(UNREACHABLE) and tells the breaker."""
    if stop.is_set():
        return
    query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(int(timeout_seconds))}
    if label_selector:
        query["labelSelector"] = label_selector
    if resource_version:
        query["resourceVersion"] = resource_version
    url_path = info.collection_path(namespace) + "?" + urlencode(query)
    api: Any = cluster.api  # the generated client is only partly annotated
    cluster.breaker.check(cluster.host)
    serialized = api.param_serialize("GET", url_path, header_params={"Accept": "application/json"},
                                     auth_settings=["BearerToken"])
    started = time.monotonic()
    try:
        cluster.count("GET", url_path)
        response = api.call_api(*serialized, _request_timeout=(cluster.timeouts.connect,
                                                               timeout_seconds + READ_GRACE))
    except ApiException as exc:
        error = _error(exc)
        if error.status == 0:
            cluster.breaker.failure(started, str(error))
        raise error from exc
    except urllib3.exceptions.HTTPError as exc:
        unreachable = cluster._unreachable(exc)
        cluster.breaker.failure(started, str(unreachable))
        raise unreachable from exc
    cluster.breaker.success()
    raw: Any = response.response  # the urllib3 HTTPResponse, body not read yet
    if not 200 <= int(response.status) <= 299:
        try:
            data = raw.read()
        finally:
            raw.close()
        try:
            payload = json.loads(data or b"{}")
        except ValueError:
            payload = {}
        raise ClusterError(int(response.status), payload.get("message", bytes(data).decode(errors="replace")),
                           payload.get("reason", ""))
    yield from _stream(raw, stop, info)


def _stream(raw: Any, stop: threading.Event, info: KindInfo) -> Iterator[dict[str, Any]]:
    """Split the body into lines (one JSON event each) as chunks arrive; a helper thread shuts
    the socket down when `stop` is set, which ends a read blocked in another thread."""
    done = threading.Event()
    closer = threading.Thread(target=_close_on_stop, args=(raw, stop, done), daemon=True,
                              name=f"watch-closer-{info.kind}")
    closer.start()
    clean = False
    try:
        pending = b""
        while not stop.is_set():
            try:
                chunk: bytes = raw.read1(_CHUNK)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if stop.is_set():
                    return
                raise ClusterError(0, f"watch of {info.plural} broke: {exc}") from exc
            if not chunk:
                clean = not pending.strip()
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event
    finally:
        done.set()
        closer.join()
        if clean and not stop.is_set():
            raw.release_conn()  # fully read: the connection can be reused
        else:
            raw.close()  # stopped or broken mid-stream: never hand this connection back


def _close_on_stop(raw: Any, stop: threading.Event, done: threading.Event) -> None:
    while not done.is_set():
        if stop.wait(_CLOSER_POLL):
            # wakes a blocked read in the watch thread (EOF); already closed or released to
            # the pool (ValueError, RuntimeError): nothing is blocked on it
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                raw.shutdown()
            return
