"""The dev cluster runs KServe's own admission validation (v0.16's InferenceService validator,
tools/kserve-webhook, behind a ValidatingWebhookConfiguration), and what the agent renders
for an autoscaled kserve model passes it: every autoscaling combination the agent accepts is
accepted by KServe, and `agent apply` of cpu- and memory-scaled models succeeds."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.errors import ValidationFailed
from agent.render import render
from agent.spec import load

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KSERVE_REFUSAL = 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '
MODE = "serving.kserve.io/deploymentMode"
KNATIVE_CLASS = "autoscaling.knative.dev/class"
KSERVE_CLASS = "serving.kserve.io/autoscalerClass"


def _isvc(name: str, namespace: str, annotations: dict[str, str], predictor: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://m/1"}, **predictor}},
    }


def _create(api_client: client.ApiClient, obj: dict[str, Any], dry_run: bool = False) -> None:
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, obj["metadata"]["namespace"], PLURAL, obj, **({"dry_run": "All"} if dry_run else {}))


def _refusal(api_client: client.ApiClient, obj: dict[str, Any], dry_run: bool = False) -> str:
    """KServe's message if the API server refuses obj through the webhook, else ""."""
    try:
        _create(api_client, obj, dry_run)
    except client.ApiException as err:
        message = str(json.loads(err.body)["message"])
        assert KSERVE_REFUSAL in message, message
        return message.split(KSERVE_REFUSAL, 1)[1]
    return ""


def test_kserve_refuses_cpu_without_an_hpa_class(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    predictor = {"minReplicas": 1, "maxReplicas": 3, "scaleMetric": "cpu", "scaleTarget": 80}
    assert _refusal(api_client, _isvc("plain", namespace, {}, predictor)) == "[cpu] is not a supported metric"
    assert custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []

    # what the agent renders instead: accepted, in both of KServe's deployment modes
    knative = _isvc("knative-hpa", namespace, {KNATIVE_CLASS: "hpa.autoscaling.knative.dev"}, predictor)
    standard = _isvc("standard-hpa", namespace, {MODE: "Standard", KSERVE_CLASS: "hpa"}, predictor)
    for obj in (knative, standard):
        assert _refusal(api_client, obj) == ""
    names = {o["metadata"]["name"] for o in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]}
    assert names == {"knative-hpa", "standard-hpa"}

    # updates are validated too: dropping the class of a cpu-scaled service is refused
    live = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "knative-hpa")
    del live["metadata"]["annotations"][KNATIVE_CLASS]
    with pytest.raises(client.ApiException) as refused:
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "knative-hpa", live)
    assert KSERVE_REFUSAL + "[cpu] is not a supported metric" in json.loads(refused.value.body)["message"]

    # and a scale target KServe's HPA rules refuse
    over = _isvc("over", namespace, {MODE: "Standard", KSERVE_CLASS: "hpa"}, {**predictor, "scaleTarget": 150})
    assert _refusal(api_client, over, dry_run=True) == "the target utilization percentage should be a [1-100] integer"


def _repo(namespace: str, autoscaling: str, annotations: dict[str, str]) -> dict[str, bytes]:
    meta = "".join(f"    {k}: {v}\n" for k, v in annotations.items())
    model = textwrap.dedent(f"""\
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: m
          namespace: {namespace}
        """) + (f"  annotations:\n{meta}" if meta else "") + textwrap.dedent(f"""\
        spec:
          format: sklearn
          versions: [{{version: "1", uri: "s3://m/1"}}]
          stable: "1"
          autoscaling: {autoscaling}
        """)
    return {"models/m.yaml": model.encode()}


def test_every_autoscaling_the_agent_accepts_kserve_accepts(api_client: client.ApiClient, namespace: str) -> None:
    """Metric x deployment mode x class annotations x target: each combination the agent
    validates renders an InferenceService KServe's validator accepts (server-side dry run)."""
    accepted: dict[str, int] = {}
    checked = 0
    for metric, mode, knative, kserve, target in itertools.product(
            ["cpu", "memory", "concurrency", "rps", None], [None, "Knative", "Serverless", "Standard", "RawDeployment"],
            [None, "hpa.autoscaling.knative.dev", "kpa.autoscaling.knative.dev"], [None, "hpa", "keda"], [None, 100, 150]):
        annotations = {k: v for k, v in ((MODE, mode), (KNATIVE_CLASS, knative), (KSERVE_CLASS, kserve)) if v}
        fields = {"min": 1, "max": 3, **({"metric": metric} if metric else {}), **({"target": target} if target else {})}
        try:
            spec = load(_repo(namespace, json.dumps(fields), annotations))
        except ValidationFailed:
            continue
        [isvc] = [o for o in render(spec) if o["kind"] == "InferenceService"]
        refusal = _refusal(api_client, isvc, dry_run=True)
        assert refusal == "", f"KServe refuses what the agent accepts ({fields}, {annotations}): {refusal}"
        checked += 1
        scaled = metric or "cpu"
        accepted[scaled] = accepted.get(scaled, 0) + 1
    assert set(accepted) == {"cpu", "memory", "concurrency", "rps"}, accepted
    assert checked >= 40, checked


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=300)


def test_agent_applies_cpu_and_memory_scaled_kserve_models(api_client: client.ApiClient, namespace: str,
                                                           kubeconfig: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model-repo"
    (repo / "models").mkdir(parents=True)
    (repo / "repo.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: modelops.dev/v1alpha1
        kind: RepositoryConfig
        metadata:
          name: kserve-admission-{namespace}
        spec:
          defaults: {{namespace: {namespace}, backend: kserve}}
          policy: {{allowedNamespaces: [{namespace}]}}
        """))
    model = textwrap.dedent("""\
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: {name}
        {annotations}spec:
          format: sklearn
          versions: [{{version: "1", uri: "s3://models/{name}/1"}}]
          stable: "1"
          autoscaling: {autoscaling}
        """)
    (repo / "models/cpu.yaml").write_text(model.format(name="cpu-scored", annotations="", autoscaling="{min: 1, max: 4}"))
    (repo / "models/memory.yaml").write_text(model.format(
        name="memory-scored", annotations="  annotations: {serving.kserve.io/deploymentMode: Standard}\n",
        autoscaling="{min: 1, max: 4, metric: memory, target: 70}"))
    applied = _agent("apply", str(repo), "--kubeconfig", str(kubeconfig), "--color", "never")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    custom = client.CustomObjectsApi(api_client)
    cpu = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cpu-scored")
    assert cpu["metadata"]["annotations"][KNATIVE_CLASS] == "hpa.autoscaling.knative.dev"
    assert cpu["spec"]["predictor"]["scaleMetric"] == "cpu"
    memory = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "memory-scored")
    assert memory["metadata"]["annotations"][KSERVE_CLASS] == "hpa"
    assert memory["spec"]["predictor"]["scaleMetric"] == "memory"

    # switched to rps in Git: the apply is an UPDATE through the webhook, the HPA class goes
    (repo / "models/cpu.yaml").write_text(model.format(name="cpu-scored", annotations="",
                                                       autoscaling="{min: 1, max: 4, metric: rps, target: 30}"))
    again = _agent("apply", str(repo), "--kubeconfig", str(kubeconfig), "--color", "never")
    assert again.returncode == 0, again.stdout + again.stderr
    rps = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cpu-scored")
    assert KNATIVE_CLASS not in rps["metadata"]["annotations"]
    assert rps["spec"]["predictor"]["scaleMetric"] == "rps"

    # a combination KServe would refuse never reaches it: the agent names file, line and field
    (repo / "models/cpu.yaml").write_text(model.format(name="cpu-scored", annotations="",
                                                       autoscaling="{min: 1, max: 4, metric: memory}"))
    refused = _agent("apply", str(repo), "--kubeconfig", str(kubeconfig), "--color", "never")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "models/cpu.yaml:9: spec.autoscaling.metric: metric memory needs KServe's Standard deployment mode" \
        in refused.stderr, refused.stderr
    unchanged = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "cpu-scored")
    assert unchanged["spec"]["predictor"]["scaleMetric"] == "rps"
