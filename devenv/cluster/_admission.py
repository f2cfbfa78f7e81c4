"""KServe's own admission validation in the dev cluster: the ValidatingWebhookConfiguration that
sends every InferenceService create and update to the local kserve-webhook process (KServe's
validator, tools/kserve-webhook), and the probe that proves the apiserver enforces it.

Named as KServe names its own, failurePolicy Fail as KServe ships it: an InferenceService the
real KServe would refuse is refused here with KServe's message, and none gets past a webhook
that is down.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from devenv.cluster._api import Api, ApiError, Json
from devenv.cluster._bootstrap import CHECK_NAMESPACE, FIELD_MANAGER

CONFIGURATION = "inferenceservice.serving.kserve.io"
WEBHOOK = "inferenceservice.kserve-webhook-server.validator"
_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
_PROBE_NAME = "devcluster-admission-probe"
# KServe v0.16's answer to scaleMetric cpu in Knative mode without Knative's HPA class
_PROBE_REFUSAL = "[cpu] is not a supported metric"


def configuration(url: str, ca_file: Path) -> Json:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [{
            "name": WEBHOOK,
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_file.read_bytes()).decode()},
            "rules": [{
                "apiGroups": ["serving.kserve.io"],
                "apiVersions": ["v1beta1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["inferenceservices"],
            }],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        }],
    }


def register(api: Api, url: str, ca_file: Path) -> None:
    """Create or update (a restart's new port) the webhook configuration."""
    api.apply(f"{_CONFIGURATIONS}/{CONFIGURATION}", configuration(url, ca_file), FIELD_MANAGER)


def enforced(api: Api) -> bool:
    """Whether the apiserver now refuses, through the webhook, an InferenceService KServe
    refuses (a server-side dry run: nothing is stored). False while the apiserver has not
    picked up the configuration or cannot reach the webhook yet."""
    isvc: Json = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": _PROBE_NAME, "namespace": CHECK_NAMESPACE},
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 2, "scaleMetric": "cpu",
                               "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://probe/model"}}},
    }
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{CHECK_NAMESPACE}/inferenceservices?dryRun=All"
    try:
        api.call("POST", path, isvc)
    except ApiError as err:
        try:
            body = json.loads(err.body)
        except ValueError:
            return False
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        return f'admission webhook "{WEBHOOK}" denied the request' in message and _PROBE_REFUSAL in message
    return False
