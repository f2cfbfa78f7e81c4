"""Where the agent reads a model's live metrics: Prometheus' HTTP API (an I/O edge).

Progressive delivery asks it for the numbers a rollout's analysis compares to thresholds
(error rate, latency quantiles, drift) and for the alerts the rendered PrometheusRules fire.
"""

from agent.metrics_source._prometheus import MetricsError, Prometheus

__all__ = ["MetricsError", "Prometheus"]
