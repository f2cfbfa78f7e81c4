"""A fake model server for Prometheus to scrape: the metrics a serving runtime exports, with
traffic synthesized from settings the test changes at run time (error rate, latency, rps).

Deterministic, no randomness: at every scrape (and before every change) each version's
counters grow by rps * elapsed seconds, errors by that times the error rate, and all those
observations land in the histogram bucket of the current latency. So a PromQL error ratio
equals the set error rate exactly, and histogram_quantile lands in the latency's bucket.
Metric names are the agent's defaults (agent.spec.MetricNames); labels are namespace, model,
version and track, as the agent's rendered PromQL selects them.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.spec import MetricNames

# prometheus_client's default buckets (+Inf is implied)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
NAMES = MetricNames()


@dataclass
class _Track:
    version: str
    track: str
    error_rate: float
    latency: float
    rps: float
    since: float
    requests: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(BUCKETS) + 1))  # per bucket, last is +Inf

    def advance(self, now: float) -> None:
        n = self.rps * max(0.0, now - self.since)
        self.since = now
        self.requests += n
        self.errors += n * self.error_rate
        self.latency_sum += n * self.latency
        self.buckets[bisect.bisect_left(BUCKETS, self.latency)] += n


def _value(v: float) -> str:
    return repr(float(v))


class ModelServer:
    """Serves /metrics on 127.0.0.1 (a free port) for the versions of one model."""

    def __init__(self, namespace: str, model: str) -> None:
        self.namespace = namespace
        self.model = model
        self.scrapes = 0
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = server.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per scrape otherwise
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"model-server-{model}", daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static target."""
        return f"127.0.0.1:{self.port}"

    def track(self, version: str, track: str, error_rate: float = 0.0, latency: float = 0.05,
              rps: float = 20.0) -> ModelServer:
        """Serve a version on a track (stable, canary); chainable."""
        with self._lock:
            self._tracks[version] = _Track(version, track, error_rate, latency, rps, since=time.monotonic())
        return self

    def set(self, version: str, *, error_rate: float | None = None, latency: float | None = None,
            rps: float | None = None) -> None:
        """Change a version's behaviour from now on (what happened so far stays counted)."""
        with self._lock:
            t = self._tracks[version]
            t.advance(time.monotonic())
            if error_rate is not None:
                t.error_rate = error_rate
            if latency is not None:
                t.latency = latency
            if rps is not None:
                t.rps = rps

    def exposition(self) -> str:
        """The Prometheus text format (0.0.4) of every version, counters advanced to now."""
        now = time.monotonic()
        hist = NAMES.latency_histogram
        lines = [
            f"# HELP {NAMES.requests_total} Prediction requests.", f"# TYPE {NAMES.requests_total} counter",
            f"# HELP {NAMES.errors_total} Failed prediction requests.", f"# TYPE {NAMES.errors_total} counter",
            f"# HELP {hist} Prediction latency.", f"# TYPE {hist} histogram",
        ]
        with self._lock:
            self.scrapes += 1
            for t in self._tracks.values():
                t.advance(now)
                labels = (f'namespace="{self.namespace}",model="{self.model}",version="{t.version}",'
                          f'track="{t.track}"')
                lines.append(f"{NAMES.requests_total}{{{labels}}} {_value(t.requests)}")
                lines.append(f"{NAMES.errors_total}{{{labels}}} {_value(t.errors)}")
                cumulative = 0.0
                for le, count in zip((*BUCKETS, float("inf")), t.buckets, strict=True):
                    cumulative += count
                    le_text = "+Inf" if le == float("inf") else repr(le)
                    lines.append(f'{hist}_bucket{{{labels},le="{le_text}"}} {_value(cumulative)}')
                lines.append(f"{hist}_sum{{{labels}}} {_value(t.latency_sum)}")
                lines.append(f"{hist}_count{{{labels}}} {_value(t.requests)}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop serving and join the thread."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10.0)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
