"""Golden-file and property tests of agent.render: Spec -> Kubernetes objects.

Goldens live in tests/unit/golden/<fixture>.yaml (the `agent render` YAML of each fixture
repo). Regenerate them with `UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py`
and review the diff; without UPDATE_GOLDEN a mismatch fails and shows the diff.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.engine import load_desired
from agent.errors import ValidationFailed
from agent.output import to_yaml
from agent.render import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SOURCE_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    TARGET_LABEL,
    object_key,
    phase,
    render,
    spec_hash,
    split,
)
from agent.spec import load

GOLDEN_DIR = Path(__file__).parent / "golden"

# --- fixture repos -------------------------------------------------------------------------
# Each fixture is {path: YAML text}; the golden of fixture X is golden/X.yaml.

_TRITON = """
apiVersion: modelops.dev/v1alpha1
kind: ServingRuntime
metadata:
  name: triton
  labels:
    team: platform
spec:
  image: nvcr.io/nvidia/tritonserver:24.08-py3
  formats: [onnx, pytorch]
  protocol: v2
  port: 8000
  metricsPort: 8002
  args: ["--model-repository=/mnt/models", "--strict-readiness=true"]
  env:
    OMP_NUM_THREADS: "2"
  resources:
    cpu: "2"
    memory: 4Gi
"""

_MLSERVER = """
apiVersion: modelops.dev/v1alpha1
kind: ServingRuntime
metadata:
  name: mlserver
spec:
  image: seldonio/mlserver:1.6.1
  formats: [sklearn, xgboost]
  protocol: v2
  port: 8080
  metricsPort: 8082
  metricsPath: /prometheus
  resources:
    cpu: 500m
    memory: 1Gi
    memoryLimit: 2Gi
"""

FIXTURES: dict[str, dict[str, str]] = {
    # KServe: canary + namespaced ServingRuntime + autoscaling + GPU; a second model without
    # a runtime (KServe picks one) on fixed replicas; cpu and memory autoscaling (HPA classes).
    "kserve": {
        "repo.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: RepositoryConfig
            metadata:
              name: golden
            spec:
              defaults:
                namespace: fraud
                backend: kserve
        """,
        "runtimes/triton.yaml": _TRITON,
        "models/fraud-scorer.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: fraud-scorer
              labels:
                team: risk
              annotations:
                owner: risk@example.com
            spec:
              format: onnx
              runtime: triton
              versions:
                - version: "12"
                  uri: s3://models/fraud-scorer/12
                  digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
                - version: "13"
                  uri: s3://models/fraud-scorer/13
              stable: "12"
              canary:
                version: "13"
                traffic: 10
              resources:
                gpu: 1
                memory: 8Gi
              autoscaling:
                min: 2
                max: 10
                metric: concurrency
                target: 20
              env:
                LOG_LEVEL: info
              serviceAccountName: fraud-scorer
        """,
        "models/chargeback.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: chargeback
            spec:
              format: sklearn
              versions:
                - version: v3
                  uri: gs://models/chargeback/v3
              stable: v3
              replicas: 2
              resources:
                cpu: "1"
                memory: 2Gi
        """,
        # cpu (the default metric) in KServe's default Knative mode: Knative's HPA class.
        "models/device-score.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: device-score
            spec:
              format: sklearn
              versions:
                - version: "1"
                  uri: gs://models/device-score/1
              stable: "1"
              autoscaling: {min: 1, max: 4}
        """,
        # memory in KServe's Standard mode: KServe's own HPA.
        "models/ledger-embed.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: ledger-embed
              annotations:
                serving.kserve.io/deploymentMode: Standard
            spec:
              format: sklearn
              versions:
                - version: "1"
                  uri: gs://models/ledger-embed/1
              stable: "1"
              autoscaling: {min: 2, max: 6, metric: memory, target: 75}
        """,
    },
    # The kubernetes backend: canary + autoscaling (an HPA per track) and fixed replicas.
    "kubernetes": {
        "runtimes/mlserver.yaml": _MLSERVER,
        "models/recommender.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: recommender
              namespace: recsys
            spec:
              format: xgboost
              runtime: mlserver
              backend: kubernetes
              versions:
                - version: "2024.05"
                  uri: s3://models/recommender/2024.05
                - version: "2024.06"
                  uri: s3://models/recommender/2024.06
              stable: "2024.05"
              canary:
                version: "2024.06"
                traffic: 20
              autoscaling:
                min: 3
                max: 20
                metric: cpu
                target: 70
        """,
        "models/ranker.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: ranker
              namespace: recsys
            spec:
              format: sklearn
              runtime: mlserver
              backend: kubernetes
              versions:
                - version: "7"
                  uri: s3://models/ranker/7
                - version: "8"
                  uri: s3://models/ranker/8
              stable: "7"
              canary:
                version: "8"
                traffic: 25
              replicas: 4
        """,
        "models/embedder.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: embedder
              namespace: recsys
            spec:
              format: sklearn
              runtime: mlserver
              backend: kubernetes
              versions:
                - version: "1"
                  uri: https://models.example.com/embedder/1
              stable: "1"
              replicas: 3
        """,
    },
    # Monitors of all three rule types, on both backends (PodMonitor / ServiceMonitor).
    "monitors": {
        "repo.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: RepositoryConfig
            metadata:
              name: golden-monitors
            spec:
              defaults:
                monitorFor: 10m
                monitorWindow: 15m
              metrics:
                latencyHistogram: model_request_duration_seconds
        """,
        "runtimes/mlserver.yaml": _MLSERVER,
        "models.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: fraud-detector
              namespace: fraud
            spec:
              format: sklearn
              runtime: mlserver
              backend: kserve
              versions:
                - version: "12"
                  uri: s3://models/fraud-detector/12
              stable: "12"
            ---
            apiVersion: modelops.dev/v1alpha1
            kind: Model
            metadata:
              name: reranker
              namespace: recsys
            spec:
              format: sklearn
              runtime: mlserver
              backend: kubernetes
              versions:
                - version: "7"
                  uri: s3://models/reranker/7
              stable: "7"
              replicas: 2
        """,
        "monitors/fraud-detector.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Monitor
            metadata:
              name: fraud-detector-slo
              namespace: fraud
              labels:
                team: risk
            spec:
              model: fraud-detector
              rules:
                - name: p99-latency
                  type: latency
                  quantile: 0.99
                  threshold: 0.25
                  window: 5m
                  for: 5m
                  severity: critical
                  action: rollback
                - name: error-rate
                  type: errorRate
                  threshold: 0.02
                - name: amount-drift
                  type: drift
                  feature: amount
                  method: ks
                  threshold: 0.3
                  window: 1h
                  severity: info
                  description: The distribution of transaction amounts moved.
        """,
        "monitors/reranker.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: Monitor
            metadata:
              name: reranker-latency
              namespace: recsys
            spec:
              model: reranker
              rules:
                - name: latency
                  type: latency
                  threshold: 0.1
        """,
    },
    # Raw manifests passed through: a Namespace (cluster-scoped), a ConfigMap and a Secret
    # (which get the default namespace when they name none).
    "manifests": {
        "repo.yaml": """
            apiVersion: modelops.dev/v1alpha1
            kind: RepositoryConfig
            metadata:
              name: golden-manifests
            spec:
              defaults:
                namespace: fraud
        """,
        "infra/namespace.yaml": """
            apiVersion: v1
            kind: Namespace
            metadata:
              name: fraud
              labels:
                istio-injection: enabled
        """,
        "infra/config.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: feature-store
            data:
              endpoint: https://features.example.com
              timeout: "3s"
            ---
            apiVersion: v1
            kind: Secret
            metadata:
              name: feature-store-token
              namespace: fraud
            type: Opaque
            stringData:
              token: s3cr3t-t0ken
        """,
    },
}


def fixture_files(name: str) -> dict[str, bytes]:
    return {path: textwrap.dedent(text).lstrip().encode() for path, text in FIXTURES[name].items()}


def write_repo(root: Path, files: dict[str, bytes]) -> Path:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def dump(objects: list[dict[str, Any]]) -> str:
    """The same YAML stream `agent render` prints."""
    return "---\n".join(to_yaml(o) for o in objects)


def render_files(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return render(load(files))


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {object_key(o): o for o in objects}


def find(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for o in objects:
        meta = o["metadata"]
        if o["kind"] == kind and meta["name"] == name and (namespace is None or meta.get("namespace") == namespace):
            return o
    raise AssertionError(f"no {kind}/{namespace}/{name} among {[object_key(o) for o in objects]}")


# --- golden files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_golden(name: str, tmp_path: Path) -> None:
    repo = write_repo(tmp_path / name, fixture_files(name))
    actual = dump(load_desired(repo).objects)
    golden = GOLDEN_DIR / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.is_file(), f"{golden} is missing: run with UPDATE_GOLDEN=1 to create it"
    expected = golden.read_text(encoding="utf-8")
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), f"golden/{name}.yaml", "rendered", lineterm=""))
        pytest.fail(f"rendered output differs from {golden} (UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_every_golden_has_a_fixture() -> None:
    """A golden left behind by a renamed fixture would never be checked again."""
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.yaml")) == sorted(FIXTURES)


# --- determinism ---------------------------------------------------------------------------


def _all_files() -> dict[str, bytes]:
    """Every fixture in one repo, under a directory per fixture (they do not collide)."""
    files: dict[str, bytes] = {}
    for name in ("kubernetes", "monitors", "manifests"):
        for path, content in fixture_files(name).items():
            if path == "repo.yaml":
                continue
            files[f"{name}/{path}"] = content
    files.pop("monitors/runtimes/mlserver.yaml")  # the same runtime as kubernetes/ declares
    for path, content in fixture_files("kserve").items():
        if path != "repo.yaml":
            files[f"kserve/{path}"] = content
    return files


def test_render_twice_gives_identical_bytes() -> None:
    files = _all_files()
    first = dump(render_files(files))
    second = dump(render_files(files))
    assert first == second
    assert json.dumps(render_files(files)) == json.dumps(render_files(files))


def test_file_order_does_not_matter() -> None:
    files = _all_files()
    expected = dump(render_files(files))
    rng = random.Random(7)
    for _ in range(5):
        items = list(files.items())
        rng.shuffle(items)
        assert dump(render_files(dict(items))) == expected


def test_document_order_within_a_file_does_not_matter() -> None:
    """All documents in one file, in any order: the same objects and hashes."""
    docs = [doc for content in fixture_files("monitors").values()
            for doc in content.decode().split("---\n") if "RepositoryConfig" not in doc]
    expected = dump(render_files({"all.yaml": "---\n".join(docs).encode()}))
    rng = random.Random(11)
    for _ in range(5):
        rng.shuffle(docs)
        assert dump(render_files({"all.yaml": "---\n".join(docs).encode()})) == expected


def test_output_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """Set/dict iteration order must never leak into the output: render in fresh
    interpreters with different PYTHONHASHSEEDs and compare bytes."""
    repo = write_repo(tmp_path / "repo", _all_files())
    script = "import sys; from agent.engine import load_desired; from agent.output import to_yaml; " \
             "sys.stdout.write('---\\n'.join(to_yaml(o) for o in load_desired(sys.argv[1]).objects))"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", script, str(repo)], env=env, capture_output=True,
                              text=True, check=True)
        outputs.add(proc.stdout)
    assert len(outputs) == 1
    assert outputs.pop() == dump(load_desired(repo).objects)


def test_objects_come_in_apply_order_then_by_identity() -> None:
    objects = render_files(_all_files())
    order = [(phase(o["kind"]), object_key(o)) for o in objects]
    assert order == sorted(order)
    assert len({key for _, key in order}) == len(order)
    kinds = [o["kind"] for o in objects]
    assert kinds.index("Namespace") < kinds.index("ConfigMap") < kinds.index("Deployment")
    assert kinds.index("Deployment") < kinds.index("HorizontalPodAutoscaler") < kinds.index("PrometheusRule")


# --- canary split --------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "percent", "expected"), [
    (10, 10, (9, 1)),
    (10, 50, (5, 5)),
    (4, 25, (3, 1)),
    (4, 50, (2, 2)),
    (20, 20, (16, 4)),
    (5, 0, (5, 0)),
    (5, 100, (0, 5)),
    (1, 10, (1, 1)),  # a side with traffic keeps a pod: the total grows by one
    (1, 90, (1, 1)),
    (2, 1, (1, 1)),
    (100, 1, (99, 1)),
    (0, 50, (0, 0)),
])
def test_split_table(total: int, percent: int, expected: tuple[int, int]) -> None:
    assert split(total, percent) == expected


def test_split_invariants() -> None:
    for total in range(1, 60):
        for percent in range(0, 101):
            stable, canary = split(total, percent)
            assert total <= stable + canary <= total + 1, (total, percent)
            assert (canary > 0) == (percent > 0), (total, percent)
            assert (stable > 0) == (percent < 100), (total, percent)
            exact = total * percent / 100
            if 1 <= exact <= total - 1:
                # no side needs topping up: as exact as whole pods allow
                assert stable + canary == total, (total, percent)
                assert abs(canary - exact) <= 0.5, (total, percent)


def test_canary_replicas_in_rendered_deployments() -> None:
    objects = render_files(fixture_files("kubernetes"))
    stable = find(objects, "Deployment", "ranker", "recsys")
    canary = find(objects, "Deployment", "ranker-canary", "recsys")
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == split(4, 25) == (3, 1)
    assert stable["metadata"]["labels"]["modelops.dev/version"] == "7"
    assert canary["metadata"]["labels"]["modelops.dev/version"] == "8"
    # one Service selects both tracks: traffic follows the pod ratio
    service = find(objects, "Service", "ranker", "recsys")
    assert service["spec"]["selector"] == {"modelops.dev/model": "ranker"}
    for d in (stable, canary):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert set(service["spec"]["selector"].items()) <= set(labels.items())
    # the autoscaled model: an HPA per track, bounds split like the replicas
    hpa_stable = find(objects, "HorizontalPodAutoscaler", "recommender", "recsys")
    hpa_canary = find(objects, "HorizontalPodAutoscaler", "recommender-canary", "recsys")
    lo, hi = split(3, 20), split(20, 20)
    assert (hpa_stable["spec"]["minReplicas"], hpa_stable["spec"]["maxReplicas"]) == (lo[0], hi[0])
    assert (hpa_canary["spec"]["minReplicas"], hpa_canary["spec"]["maxReplicas"]) == (lo[1], hi[1])
    assert hpa_canary["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                    "name": "recommender-canary"}


def test_kserve_canary_serves_the_canary_artifact() -> None:
    isvc = find(render_files(fixture_files("kserve")), "InferenceService", "fraud-scorer", "fraud")
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"] == "s3://models/fraud-scorer/13"
    assert predictor["model"]["runtime"] == "triton"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 10)
    annotations = isvc["metadata"]["annotations"]
    assert annotations["modelops.dev/stable-version"] == "12"
    assert annotations["modelops.dev/canary-version"] == "13"
    assert annotations["modelops.dev/canary-traffic"] == "10"


def test_kserve_serving_runtime_is_namespaced_per_model_namespace() -> None:
    files = fixture_files("kserve")
    files["models/other.yaml"] = textwrap.dedent("""
        apiVersion: modelops.dev/v1alpha1
        kind: Model
        metadata:
          name: other
          namespace: recsys
        spec:
          format: pytorch
          runtime: triton
          versions:
            - version: "1"
              uri: s3://models/other/1
          stable: "1"
    """).encode()
    objects = render_files(files)
    runtimes = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "ServingRuntime"}
    assert sorted(runtimes) == ["fraud", "recsys"]
    assert [f["name"] for f in runtimes["fraud"]["spec"]["supportedModelFormats"]] == ["onnx"]
    assert [f["name"] for f in runtimes["recsys"]["spec"]["supportedModelFormats"]] == ["pytorch"]


# --- replicas vs HPA -----------------------------------------------------------------------


def test_no_replicas_on_a_deployment_an_hpa_scales() -> None:
    objects = render_files(_all_files())
    scaled = {(o["metadata"]["namespace"], o["spec"]["scaleTargetRef"]["name"])
              for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert scaled == {("recsys", "recommender"), ("recsys", "recommender-canary")}
    assert {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments} >= scaled
    for d in deployments:
        key = (d["metadata"]["namespace"], d["metadata"]["name"])
        if key in scaled:
            assert "replicas" not in d["spec"], key
        else:
            assert isinstance(d["spec"].get("replicas"), int), key


# --- ownership labels and spec hash --------------------------------------------------------


def test_every_object_carries_ownership_and_hash() -> None:
    objects = render_files(_all_files())
    kinds = {o["kind"] for o in objects}
    assert kinds >= {"InferenceService", "ServingRuntime", "Deployment", "Service", "HorizontalPodAutoscaler",
                     "PrometheusRule", "ServiceMonitor", "PodMonitor", "Namespace", "ConfigMap", "Secret"}
    for o in objects:
        meta = o["metadata"]
        assert meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY, object_key(o)
        assert meta["labels"][TARGET_LABEL] == "default", object_key(o)
        assert meta["annotations"][SOURCE_ANNOTATION].endswith(".yaml"), object_key(o)
        h = meta["annotations"][SPEC_HASH_ANNOTATION]
        assert len(h) == 16 and int(h, 16) >= 0
        assert h == spec_hash(o), object_key(o)


def test_target_label_is_the_repository_name() -> None:
    for o in render_files(fixture_files("kserve")):
        assert o["metadata"]["labels"][TARGET_LABEL] == "golden"


def test_raw_manifests_pass_through() -> None:
    objects = render_files(fixture_files("manifests"))
    ns = find(objects, "Namespace", "fraud")
    assert "namespace" not in ns["metadata"]
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    cm = find(objects, "ConfigMap", "feature-store", "fraud")  # default namespace applied
    assert cm["data"] == {"endpoint": "https://features.example.com", "timeout": "3s"}
    secret = find(objects, "Secret", "feature-store-token", "fraud")
    # stringData is applied as data (so a foreign write to it is visible as drift); plans redact
    assert "stringData" not in secret
    assert secret["data"] == {"token": base64.b64encode(b"s3cr3t-t0ken").decode()}
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["annotations"][SOURCE_ANNOTATION] == "infra/config.yaml"


def _secret_repo(body: str) -> dict[str, bytes]:
    files = fixture_files("manifests")
    files["infra/config.yaml"] = textwrap.dedent(body).lstrip().encode()
    return files


def test_secret_string_data_merges_into_data_and_wins_on_the_same_key() -> None:
    objects = render_files(_secret_repo("""
        apiVersion: v1
        kind: Secret
        metadata:
          name: creds
        data:
          user: c3Zj            # "svc"
          password: b2xk        # "old": stringData names it too and wins, as on the API server
        stringData:
          password: "pässwörd 🔑"
          url: "postgres://db:5432/x"
    """))
    secret = find(objects, "Secret", "creds", "fraud")
    assert "stringData" not in secret
    decoded = {k: base64.b64decode(v).decode("utf-8") for k, v in secret["data"].items()}
    assert decoded == {"user": "svc", "password": "pässwörd 🔑", "url": "postgres://db:5432/x"}
    assert secret["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(secret)


@pytest.mark.parametrize("body", [
    # not a v1 Secret: passed through as written
    """
    apiVersion: example.com/v1
    kind: Secret
    metadata: {name: creds}
    stringData: {password: x}
    """,
    """
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: creds}
    data: {stringData: x}
    """,
])
def test_string_data_of_other_kinds_is_left_alone(body: str) -> None:
    files = _secret_repo(body)
    files["repo.yaml"] = files["repo.yaml"].replace(
        b"spec:\n", b"spec:\n  policy:\n    allowedKinds: [Namespace, ConfigMap, example.com/Secret]\n")
    [obj] = [o for o in render_files(files) if o["metadata"]["name"] == "creds"]
    expected = yaml.safe_load(textwrap.dedent(body))
    assert {k: v for k, v in obj.items() if k != "metadata"} == {k: v for k, v in expected.items() if k != "metadata"}


def _promote(files: dict[str, bytes]) -> None:
    text = files["models/ranker.yaml"].decode()
    text = text[:text.index("  canary:")] + text[text.index("  replicas:"):]
    files["models/ranker.yaml"] = text.replace('stable: "7"', 'stable: "8"').encode()


def _edit(path: str, old: bytes, new: bytes) -> Any:
    def apply(files: dict[str, bytes]) -> None:
        assert old in files[path]
        files[path] = files[path].replace(old, new)
    return apply


MUTATIONS = {
    "canary-traffic": _edit("models/ranker.yaml", b"traffic: 25", b"traffic: 50"),
    "promote": _promote,
    "hpa-target": _edit("models/recommender.yaml", b"target: 70", b"target: 60"),
    "model-env": _edit("models/embedder.yaml", b"replicas: 3", b'replicas: 3\n  env:\n    DEBUG: "1"'),
    "runtime-image": _edit("runtimes/mlserver.yaml", b"seldonio/mlserver:1.6.1", b"seldonio/mlserver:1.6.2"),
}


def _without_hash(o: dict[str, Any]) -> dict[str, Any]:
    annotations = {k: v for k, v in o["metadata"]["annotations"].items() if k != SPEC_HASH_ANNOTATION}
    return {**o, "metadata": {**o["metadata"], "annotations": annotations}}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_spec_hash_changes_iff_object_changes(mutation: str) -> None:
    files = fixture_files("kubernetes")
    changed = dict(files)
    MUTATIONS[mutation](changed)
    before, after = by_key(render_files(files)), by_key(render_files(changed))
    differing = 0
    for key in set(before) & set(after):
        same_object = _without_hash(before[key]) == _without_hash(after[key])
        same_hash = (before[key]["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
                     == after[key]["metadata"]["annotations"][SPEC_HASH_ANNOTATION])
        assert same_object == same_hash, key
        differing += not same_object
    assert differing, "the mutation changed no object"
    # and the objects it did not touch keep their hash (no global salt in the hash)
    assert differing < len(set(before) & set(after))


def test_spec_hash_ignores_key_order_and_its_own_annotation() -> None:
    obj = find(render_files(fixture_files("kserve")), "InferenceService", "fraud-scorer")
    reordered = json.loads(json.dumps(obj, sort_keys=True))
    reordered["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "something else"
    assert spec_hash(reordered) == spec_hash(obj)
    reordered["spec"]["predictor"]["canaryTrafficPercent"] = 11
    assert spec_hash(reordered) != spec_hash(obj)


# --- collisions ----------------------------------------------------------------------------


def test_same_object_rendered_twice_names_both_files() -> None:
    files = fixture_files("kubernetes")
    files["infra/service.yaml"] = textwrap.dedent("""
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: unrelated
          namespace: recsys
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: ranker
          namespace: recsys
        spec:
          ports:
            - port: 80
    """).lstrip().encode()
    with pytest.raises(ValidationFailed) as info:
        render_files(files)
    errors = info.value.errors
    assert len(errors) == 1
    text = str(info.value)
    assert "models/ranker.yaml" in text and "infra/service.yaml" in text
    assert errors[0].file == "infra/service.yaml" and errors[0].line == 7
    assert "Service/recsys/ranker" in errors[0].message
    assert "models/ranker.yaml:1" in errors[0].message


def test_canary_deployment_name_collides_with_another_model() -> None:
    files = fixture_files("kubernetes")
    files["models/ranker-canary.yaml"] = files["models/embedder.yaml"].replace(b"name: embedder", b"name: ranker-canary")
    with pytest.raises(ValidationFailed) as info:
        render_files(files)
    messages = [str(e) for e in info.value.errors]
    assert any("Deployment/recsys/ranker-canary" in m for m in messages), messages
    assert all("models/ranker-canary.yaml" in m and "models/ranker.yaml" in m for m in messages), messages


@pytest.mark.parametrize(("traffic", "idle"), [(0, "recommender-canary"), (100, "recommender")])
def test_autoscaled_track_without_traffic_gets_no_pods(traffic: int, idle: str) -> None:
    """Traffic follows pods; an HPA cannot go below one pod, so a track at 0% has none."""
    files = fixture_files("kubernetes")
    files["models/recommender.yaml"] = files["models/recommender.yaml"].replace(b"traffic: 20", f"traffic: {traffic}".encode())
    objects = render_files(files)
    hpas = {o["metadata"]["name"]: o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    busy = ({"recommender", "recommender-canary"} - {idle}).pop()
    assert set(hpas) & {"recommender", "recommender-canary"} == {busy}
    assert (hpas[busy]["spec"]["minReplicas"], hpas[busy]["spec"]["maxReplicas"]) == (3, 20)
    assert find(objects, "Deployment", idle, "recsys")["spec"]["replicas"] == 0
    assert "replicas" not in find(objects, "Deployment", busy, "recsys")["spec"]


@pytest.mark.parametrize(("threshold", "literal"), [
    ("0.25", "0.25"), ("2", "2"), ("2.0", "2"), ("12345678", "12345678"), ("0.1234567", "0.1234567"),
    ("1.0e-7", "1e-07"), ("0.000123456789", "0.000123456789"),
])
def test_alert_thresholds_are_exact(threshold: str, literal: str) -> None:
    """An alert compares against exactly the declared number (`:g` rounded to 6 digits)."""
    files = fixture_files("monitors")
    files["monitors/reranker.yaml"] = files["monitors/reranker.yaml"].replace(
        b"threshold: 0.1", f"threshold: {threshold}\n      quantile: 0.9999".encode())
    rule = find(render_files(files), "PrometheusRule", "reranker-latency")["spec"]["groups"][0]["rules"][0]
    assert rule["expr"].startswith("histogram_quantile(0.9999, ")
    assert rule["expr"].endswith(f") > {literal}")
    assert float(literal) == float(threshold)


# --- the example repository ----------------------------------------------------------------

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "model-repo"


def test_example_repo_renders_with_the_same_guarantees() -> None:
    """examples/model-repo changes as it is written, so no golden: the properties instead."""
    assert (EXAMPLE_REPO / "repo.yaml").is_file(), "examples/model-repo is missing"
    desired = load_desired(EXAMPLE_REPO)
    objects = desired.objects
    assert {m.backend for m in desired.spec.models} == {"kserve", "kubernetes"}
    order = [(phase(o["kind"]), object_key(o)) for o in objects]
    assert order == sorted(order)
    target = desired.spec.config.name
    scaled = {(o["metadata"]["namespace"], o["spec"]["scaleTargetRef"]["name"])
              for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    for o in objects:
        meta = o["metadata"]
        assert meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY
        assert meta["labels"][TARGET_LABEL] == target
        assert meta["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(o)
        assert (EXAMPLE_REPO / meta["annotations"][SOURCE_ANNOTATION]).is_file()
        if o["kind"] == "Deployment":
            assert ("replicas" in o["spec"]) != ((meta["namespace"], meta["name"]) in scaled)
    # byte-identical when the files come in another order
    from agent.source import DirectorySource, decrypt_snapshot

    files = decrypt_snapshot(DirectorySource(EXAMPLE_REPO).snapshot()).files  # its Secret is SOPS-encrypted
    items = sorted(files.items(), reverse=True)
    assert dump(render_files(dict(items))) == dump(objects)


def test_stage_label_and_owner_annotation_on_model_objects_not_pods() -> None:
    objects = load_desired(Path(__file__).resolve().parents[2] / "examples" / "model-repo").objects
    isvc = next(o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "fraud-scorer")
    assert isvc["metadata"]["labels"]["modelops.dev/stage"] == "production"
    assert isvc["metadata"]["annotations"]["modelops.dev/owner"] == "fraud-ml@acme.example"
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        assert "modelops.dev/stage" in deployment["metadata"]["labels"]
        assert "modelops.dev/stage" not in deployment["spec"]["template"]["metadata"]["labels"]


# --- resource precedence: Model, then its ServingRuntime, then the repo defaults -------------


def _sized_repo(backend: str, defaults: str, runtime: str, model: str) -> dict[str, bytes]:
    """A repo whose three sizing layers are given as YAML flow mappings ("" leaves one out)."""
    def res(flow: str) -> str:
        return f"\n  resources: {flow}" if flow else ""

    return {
        "repo.yaml": (f"apiVersion: modelops.dev/v1alpha1\nkind: RepositoryConfig\nmetadata: {{name: sizing}}\n"
                      f"spec:\n  defaults: {{resources: {defaults or '{}'}}}\n").encode(),
        "runtime.yaml": (f"apiVersion: modelops.dev/v1alpha1\nkind: ServingRuntime\nmetadata: {{name: server}}\n"
                         f"spec:\n  image: example.com/server:1\n  formats: [onnx]{res(runtime)}\n").encode(),
        "model.yaml": (f"apiVersion: modelops.dev/v1alpha1\nkind: Model\nmetadata: {{name: m, namespace: ml}}\n"
                       f"spec:\n  format: onnx\n  runtime: server\n  backend: {backend}\n"
                       f"  versions: [{{version: '1', uri: 's3://b/m/1'}}]\n  stable: '1'{res(model)}\n").encode(),
    }


def _model_resources(backend: str, defaults: str, runtime: str, model: str) -> dict[str, Any]:
    objects = render_files(_sized_repo(backend, defaults, runtime, model))
    if backend == "kserve":
        return dict(find(objects, "InferenceService", "m", "ml")["spec"]["predictor"]["model"].get("resources", {}))
    container = find(objects, "Deployment", "m", "ml")["spec"]["template"]["spec"]["containers"][0]
    return dict(container.get("resources", {}))


BACKENDS = ["kserve", "kubernetes"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_runtime_resources_win_over_repo_defaults(backend: str) -> None:
    """issue #9: defaults {cpu: 500m, memory: 1Gi}, runtime {cpu: "1", memory: 2Gi}, a Model
    that says nothing: the runtime's sizing (what its server needs) wins, as docs/spec.md says."""
    got = _model_resources(backend, "{cpu: 500m, memory: 1Gi}", '{cpu: "1", memory: 2Gi}', "")
    assert got == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    # the Model's own value wins over both; a field only the defaults set still comes from them
    got = _model_resources(backend, "{cpu: 500m, memory: 1Gi, cpuLimit: '3'}", '{cpu: "1", memory: 2Gi}', "{memory: 4Gi}")
    assert got == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "3", "memory": "4Gi"}}


# field -> (defaults value, runtime value, model value), each rendered at (section, key)
_FIELDS = {
    "cpu": (("500m", "'1'", "'2'"), ("requests", "cpu"), ("500m", "1", "2")),
    "memory": (("1Gi", "2Gi", "3Gi"), ("requests", "memory"), ("1Gi", "2Gi", "3Gi")),
    "gpu": (("1", "2", "3"), ("limits", "nvidia.com/gpu"), ("1", "2", "3")),
    "cpuLimit": (("'4'", "'5'", "'6'"), ("limits", "cpu"), ("4", "5", "6")),
    "memoryLimit": (("4Gi", "5Gi", "6Gi"), ("limits", "memory"), ("4Gi", "5Gi", "6Gi")),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field", sorted(_FIELDS))
def test_resource_precedence_per_field(backend: str, field: str) -> None:
    (d, r, m), (section, key), (rendered_d, rendered_r, rendered_m) = _FIELDS[field]

    def wrap(value: str) -> str:
        return f"{{{field}: {value}}}" if value else ""

    def got(defaults: str, runtime: str, model: str) -> Any:
        return _model_resources(backend, wrap(defaults), wrap(runtime), wrap(model)).get(section, {}).get(key)

    assert got(d, r, m) == rendered_m  # the Model wins
    assert got(d, r, "") == rendered_r  # then the runtime
    assert got(d, "", "") == rendered_d  # then the repo defaults
    assert got("", r, "") == rendered_r
    assert got("", "", m) == rendered_m


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_zero_gpu_drops_the_runtimes_gpu(backend: str) -> None:
    """`gpu: 0` is a value, not "unset": a CPU-only Model on a GPU runtime gets no GPU (it used
    to inherit the runtime's). It is rendered as "0" so that on kserve it also overrides the GPU
    of the rendered ServingRuntime's container."""
    got = _model_resources(backend, "{gpu: 2}", "{gpu: 1, cpu: '1'}", "{gpu: 0}")
    assert got["requests"] == {"cpu": "1", "nvidia.com/gpu": "0"}
    assert got["limits"] == {"nvidia.com/gpu": "0"}
    got = _model_resources(backend, "{gpu: 2}", "{gpu: 0}", "")  # the runtime's 0 wins over the default
    assert got["limits"] == {"nvidia.com/gpu": "0"}
    assert "nvidia.com/gpu" not in str(_model_resources(backend, "", "{cpu: '1'}", ""))  # nobody asks: none


def test_docs_state_the_precedence_the_renderer_implements() -> None:
    """issue #9: the docs said Model, then defaults.resources, then the runtime; the renderer
    has always done Model, then runtime, then defaults. Pin the docs to the code."""
    root = Path(__file__).resolve().parents[2]
    spec_md = (root / "docs" / "spec.md").read_text(encoding="utf-8")
    assert "the Model's own value, then its ServingRuntime's `resources`, then this default" in spec_md
    assert "then this default, then the runtime" not in spec_md
    assert "come from `defaults.resources`, then from the runtime" not in spec_md
    example = (root / "examples" / "model-repo" / "repo.yaml").read_text(encoding="utf-8")
    assert "the Model's own resources, then its\n    # runtime's resources (runtimes/), then these defaults" in example
    model_schema = json.loads((root / "schemas" / "model.schema.json").read_text(encoding="utf-8"))
    described = model_schema["properties"]["spec"]["properties"]["resources"]["description"]
    assert "from the ServingRuntime's resources, then from the RepositoryConfig's defaults.resources" in described


@pytest.mark.parametrize("backend", BACKENDS)
def test_inherited_limit_below_the_models_request_is_refused_offline(backend: str) -> None:
    """Per-field layering can combine a Model's request with a lower limit of its runtime (or of
    the repo defaults): the API server would refuse that container with a 422 after other
    objects were applied, so the loader refuses the commit and names where each value came from."""
    files = _sized_repo(backend, "{cpuLimit: 500m}", "{memory: 1Gi, memoryLimit: 2Gi}", "{cpu: '1', memory: 4Gi}")
    with pytest.raises(ValidationFailed) as caught:
        load(files)
    assert [str(e) for e in caught.value.errors] == [
        "model.yaml:10: spec.resources: the CPU request 1 (the Model) is above the CPU limit 500m "
        "(defaults.resources): the API server would refuse the container; set cpuLimit (or lower the request)",
        "model.yaml:10: spec.resources: the memory request 4Gi (the Model) is above the memory limit 2Gi "
        "(ServingRuntime 'server'): the API server would refuse the container; set memoryLimit (or lower the request)",
    ]
    # the Model that raises its limit too is fine; so is an inherited limit above the request
    ok = _model_resources(backend, "{cpuLimit: 500m}", "{memory: 1Gi, memoryLimit: 2Gi}",
                          "{cpu: 250m, memory: 4Gi, memoryLimit: 6Gi}")
    assert ok == {"requests": {"cpu": "250m", "memory": "4Gi"}, "limits": {"cpu": "500m", "memory": "6Gi"}}
    assert _model_resources(backend, "", "{memoryLimit: 4096Mi}", "{memory: 4Gi}")["limits"] == {"memory": "4096Mi"}


def test_runtime_whose_own_limit_is_below_its_request_is_refused() -> None:
    files = _sized_repo("kserve", "", "{cpu: '2', cpuLimit: 1500m}", "")
    with pytest.raises(ValidationFailed) as caught:
        load(files)
    assert [str(e) for e in caught.value.errors] == [
        "runtime.yaml:7: spec.resources: the CPU request 2 (this ServingRuntime) is above the CPU limit 1500m "
        "(this ServingRuntime): the API server would refuse the container; set cpuLimit (or lower the request)",
    ]
