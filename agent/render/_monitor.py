"""Monitor -> Prometheus-Operator PrometheusRule, plus the scrape config the backend needs
(ServiceMonitor for the kubernetes backend, PodMonitor for KServe predictor pods).

Scrape configs relabel our pod labels to `model`, `version` and `track`, so alert expressions
select a model's series the same way on either backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.render._kubernetes import HTTP_PORT_NAME, METRICS_PORT_NAME
from agent.render._meta import MODEL_LABEL, MONITOR_LABEL
from agent.spec import MetricNames, Model, Monitor, MonitorRule, ServingRuntime

MONITORING_API = "monitoring.coreos.com/v1"
KSERVE_ISVC_LABEL = "serving.kserve.io/inferenceservice"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)


def _number(value: float) -> str:
    """A PromQL number literal of exactly this value (`:g` would round to 6 digits)."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label(value: str) -> str:
    """A PromQL double-quoted string body for `value` (backslash and double quote escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _selector(monitor: Monitor, extra: Mapping[str, str] | None = None) -> str:
    labels = {"namespace": monitor.namespace, "model": monitor.model, **(extra or {})}
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def expression(
    monitor: Monitor,
    rule: MonitorRule,
    metrics: MetricNames,
    *,
    labels: Mapping[str, str] | None = None,
    window: str | None = None,
    compare: bool = True,
) -> str:
    """The PromQL of a Monitor rule: its alert expression (`<value> > threshold`), or with
    `compare=False` only the value, e.g. for a rollout's analysis, which also narrows every
    selector with `labels` (version, track) and judges its own `window` instead of the rule's."""
    extra = dict(labels or {})
    sel, w = _selector(monitor, extra), window or rule.window
    if rule.type == "latency":
        value = (
            f"histogram_quantile({_number(rule.quantile)}, sum by (le) "
            f"(rate({metrics.latency_histogram}_bucket{sel}[{w}])))"
        )
    elif rule.type == "errorRate":
        value = f"sum(rate({metrics.errors_total}{sel}[{w}])) / sum(rate({metrics.requests_total}{sel}[{w}]))"
    else:
        drift_sel = _selector(monitor, {"feature": rule.feature or "", "method": rule.method, **extra})
        value = f"max(max_over_time({metrics.drift_score}{drift_sel}[{w}]))"
    return f"{value} > {_number(rule.threshold)}" if compare else value


def _summary(monitor: Monitor, rule: MonitorRule) -> str:
    target = f"{monitor.namespace}/{monitor.model}"
    if rule.type == "latency":
        return f"p{rule.quantile * 100:g} latency of {target} above {rule.threshold:g}s"
    if rule.type == "errorRate":
        return f"error rate of {target} above {rule.threshold * 100:g}%"
    return f"{rule.method.upper()} drift of feature {rule.feature} of {target} above {rule.threshold:g}"


def prometheus_rule(monitor: Monitor, metrics: MetricNames) -> dict[str, Any]:
    rules = []
    for rule in monitor.rules:
        summary = _summary(monitor, rule)
        rules.append({
            "alert": f"{_camel(monitor.model)}{_camel(rule.name)}",
            "expr": expression(monitor, rule, metrics),
            "for": rule.for_,
            "labels": {
                "severity": rule.severity,
                "namespace": monitor.namespace,
                "model": monitor.model,
                "monitor": monitor.name,
                "rule_type": rule.type,
                "action": rule.action,
            },
            "annotations": {
                "summary": summary,
                "description": rule.description or f"{summary} for {rule.for_} (window {rule.window}).",
            },
        })
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": {
            "name": monitor.name,
            "namespace": monitor.namespace,
            "labels": {**monitor.labels, MODEL_LABEL: monitor.model, MONITOR_LABEL: monitor.name},
        },
        "spec": {"groups": [{"name": f"modelops.{monitor.namespace}.{monitor.name}", "rules": rules}]},
    }


_RELABEL_POD = [
    {"sourceLabels": ["__meta_kubernetes_pod_label_modelops_dev_version"], "targetLabel": "version"},
    {"sourceLabels": ["__meta_kubernetes_pod_label_modelops_dev_track"], "targetLabel": "track"},
]


def scrape_config(model: Model, runtime: ServingRuntime | None) -> dict[str, Any]:
    """How Prometheus finds the model's metrics; `model` is set from our pod label."""
    meta = {
        "name": model.name,
        "namespace": model.namespace,
        "labels": {**model.labels, MODEL_LABEL: model.name},
    }
    path = runtime.metrics_path if runtime else "/metrics"
    if model.backend == "kubernetes":
        port = METRICS_PORT_NAME if runtime and runtime.metrics_port and runtime.metrics_port != runtime.port else HTTP_PORT_NAME
        relabelings: list[dict[str, Any]] = [
            {"sourceLabels": ["__meta_kubernetes_service_label_modelops_dev_model"], "targetLabel": "model"},
            *_RELABEL_POD,
        ]
        if model.rollout is not None and model.rollout.strategy == "blueGreen":
            # After the switch the main Service and <name>-preview both select the new pods: keep
            # them through the preview only, so every pod is scraped once (request counts and
            # minRequests would double otherwise).
            relabelings.append({"sourceLabels": ["__meta_kubernetes_service_name",
                                                 "__meta_kubernetes_pod_label_modelops_dev_track"],
                                "separator": ";", "regex": f"{model.name};canary", "action": "drop"})
        endpoint = {"port": port, "path": path, "interval": "30s", "relabelings": relabelings}
        return {
            "apiVersion": MONITORING_API,
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {"selector": {"matchLabels": {MODEL_LABEL: model.name}}, "endpoints": [endpoint]},
        }
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": {KSERVE_ISVC_LABEL: model.name}},
            "podMetricsEndpoints": [{
                "portNumber": (runtime.metrics_port or runtime.port) if runtime else 8080,
                "path": path,
                "interval": "30s",
                "relabelings": [
                    {"sourceLabels": ["__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice"], "targetLabel": "model"},
                    *_RELABEL_POD,
                ],
            }],
        },
    }
