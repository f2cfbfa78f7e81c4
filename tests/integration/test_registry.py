"""Issue #12 against a real MLflow server (tools/mlflow) and real GTO tags: a Model version that
names `@champion` renders the artifact of whatever version the alias points at; moving the alias
changes the rendered storageUri (and its registry annotation) and nothing else, and a live
`agent diff` says `alias champion: 1 -> 2 (uri)`; a promotion gate is checked against the
metrics the version's MLflow run logged; a registry that cannot answer is a clear exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.cluster import MlflowInfo
from tests.integration import _mlflow as ml
from tests.integration._forge_repos import alias_repo as repo
from tests.integration._forge_repos import registered_runs as registered
from tests.integration._repos import GIT

pytestmark = pytest.mark.integration

AGENT = str(Path(sys.executable).parent / "agent")
API = "modelops.dev/v1alpha1"


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=120)


def rendered(path: Path) -> dict[str, dict[str, Any]]:
    out = agent("render", str(path), "-o", "json")
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    items = docs["items"] if isinstance(docs, dict) and "items" in docs else docs
    return {f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in items}


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_moving_the_alias_changes_the_storage_uri_and_nothing_else(
        tmp_path: Path, mlflow: MlflowInfo, kubeconfig: Path) -> None:
    """Offline: the rendered objects differ by the artifact, what derives from it and the
    registry annotation. Live: `agent diff` against what was applied says the alias moved."""
    name, runs, versions = registered(mlflow, (0.95, 0.97))
    path = repo(tmp_path / "repo", mlflow.url, name, namespace="reg-alias", target="reg-alias")
    isvc_key = "InferenceService/reg-alias/scorer"
    assert agent("validate", str(path)).returncode == 0  # offline: only the reference's shape
    before = rendered(path)
    isvc = before[isvc_key]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == ml.stored(mlflow.url, runs[0])
    assert isvc["metadata"]["annotations"]["modelops.dev/stable-registry"] == f"mlflow {name}@champion={versions[0]}"
    applied = agent("apply", str(path), "--kubeconfig", str(kubeconfig))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    unchanged = agent("diff", str(path), "--kubeconfig", str(kubeconfig))
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    ml.set_alias(mlflow.url, name, "champion", versions[1])
    after = rendered(path)
    new_uri = ml.stored(mlflow.url, runs[1])
    assert after[isvc_key]["spec"]["predictor"]["model"]["storageUri"] == new_uri
    assert after[isvc_key]["metadata"]["annotations"]["modelops.dev/stable-registry"] == \
        f"mlflow {name}@champion={versions[1]}"
    changed = [f"{key}{d}" for key in sorted(set(before) | set(after))
               for d in differences(before.get(key), after.get(key))]
    env = after[isvc_key]["spec"]["predictor"]["model"]["env"]
    uri_env = next(i for i, e in enumerate(env) if e["name"] == "MODEL_URI")
    # the artifact and what is derived from it (the MODEL_URI variable, the registry
    # provenance, the spec hash): nothing else
    assert changed == [f"{isvc_key}.metadata.annotations.modelops.dev/spec-hash",
                       f"{isvc_key}.metadata.annotations.modelops.dev/stable-registry",
                       f"{isvc_key}.spec.predictor.model.env[{uri_env}].value",
                       f"{isvc_key}.spec.predictor.model.storageUri"], changed

    line = f"alias champion: {versions[0]} -> {versions[1]} ({new_uri})"
    text = agent("diff", str(path), "--kubeconfig", str(kubeconfig), "--color", "never")
    assert text.returncode == 1, text.stdout + text.stderr
    assert line in text.stdout, text.stdout
    as_json = agent("diff", str(path), "--kubeconfig", str(kubeconfig), "-o", "json")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    plan = json.loads(as_json.stdout)
    (model,) = [m for m in plan["models"] if m["name"] == "scorer"]
    assert model["changes"] == [line, "objects 1 updated"], model
    (update,) = [o for o in plan["objects"] if o["action"] == "update"]
    assert update["kind"] == "InferenceService"
    assert sorted(update["changedFields"]) == ["metadata.annotations.modelops.dev/stable-registry",
                                               f"spec.predictor.model.env[{uri_env}].value",
                                               "spec.predictor.model.storageUri"], update


def test_a_gate_is_checked_against_the_runs_metrics(tmp_path: Path, mlflow: MlflowInfo) -> None:
    name, runs, versions = registered(mlflow, (0.91, 0.97))
    path = repo(tmp_path / "repo", mlflow.url, name, gate=0.95)
    assert agent("validate", str(path)).returncode == 0  # the metric is in MLflow, not in Git
    refused = agent("render", str(path))
    assert refused.returncode == 2
    assert "models/scorer.yaml" in refused.stderr and "promotion gate" in refused.stderr
    assert "auc=0.91" in refused.stderr and runs[0] in refused.stderr
    ml.set_alias(mlflow.url, name, "champion", versions[1])  # a version that meets it
    assert agent("render", str(path)).returncode == 0


def test_a_registry_that_cannot_answer_is_exit_2_naming_it(tmp_path: Path, mlflow: MlflowInfo) -> None:
    name, _runs, _versions = registered(mlflow, (0.95, 0.97))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = repo(tmp_path / "repo", dead, name)
    out = agent("render", str(path))
    assert out.returncode == 2
    assert "127.0.0.1" in out.stderr and name in out.stderr and "champion" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_gto_stage_tag_resolves_the_same_way(tmp_path: Path) -> None:
    """`registry: {gto: {name, stage: prod}}` reads the model repo's own GTO tags: the newest
    `scorer#prod#N` names the commit whose `scorer@vX` version and artifacts.yaml entry serve."""
    root = tmp_path / "repo"
    path = repo(root, "http://127.0.0.1:9", "unused")  # the MLflow settings are not used by a GTO ref
    model = path / "models" / "scorer.yaml"
    doc = next(iter(yaml.safe_load_all(model.read_text())))
    doc["spec"]["versions"] = [{"version": "prod", "registry": {"gto": {"name": "scorer", "stage": "prod"}}}]
    doc["spec"]["stable"] = "prod"
    model.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = next(iter(yaml.safe_load_all((path / "repo.yaml").read_text())))
    config["spec"]["exclude"] = ["artifacts.yaml"]  # GTO's own file, not a manifest
    (path / "repo.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def release(uri: str, version: str, n: int) -> None:
        (path / "artifacts.yaml").write_text(yaml.safe_dump({"scorer": {"type": "model", "path": uri}}))
        subprocess.run([*GIT, "add", "-A"], cwd=path, check=True)
        subprocess.run([*GIT, "commit", "-qm", f"scorer {version}"], cwd=path, check=True)
        for tag in (f"scorer@{version}", f"scorer#prod#{n}"):
            subprocess.run([*GIT, "tag", "-a", tag, "-m", tag], cwd=path, check=True)

    release("s3://models/scorer/1.0.0", "v1.0.0", 1)
    assert rendered(path)["InferenceService/reg/scorer"]["spec"]["predictor"]["model"]["storageUri"] == \
        "s3://models/scorer/1.0.0"
    release("s3://models/scorer/1.1.0", "v1.1.0", 2)
    assert rendered(path)["InferenceService/reg/scorer"]["spec"]["predictor"]["model"]["storageUri"] == \
        "s3://models/scorer/1.1.0"


def test_the_controller_keeps_the_last_good_state_while_the_registry_is_down(
        tmp_path: Path, mlflow: MlflowInfo, kubeconfig: Path) -> None:
    """A commit whose registry cannot answer is not applied and not counted as invalid Git: the
    last good commit stays in force, and the same commit is tried again until MLflow answers."""
    import threading
    import time

    from agent.cluster import Cluster
    from agent.controller import Controller, RunConfig

    name, runs, _versions = registered(mlflow, (0.95, 0.97))
    work = repo(tmp_path / "repo", mlflow.url, name)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=work, check=True)

    def storage_uri() -> Any:
        with Cluster.connect(str(kubeconfig)) as cluster:
            obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", "reg")
        return None if obj is None else obj["spec"]["predictor"]["model"]["storageUri"]

    def wait(check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    config = RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                       cache_dir=tmp_path / "mirrors")
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        wait(lambda: storage_uri() == ml.stored(mlflow.url, runs[0]), "the first apply")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        config_file = work / "repo.yaml"
        config_file.write_text(config_file.read_text().replace(mlflow.url, dead))
        model = work / "models" / "scorer.yaml"
        model.write_text(model.read_text().replace("replicas: 1", "replicas: 2"))
        subprocess.run([*GIT, "commit", "-qam", "registry moved (and 2 replicas)"], cwd=work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True, capture_output=True)
        wait(lambda: "127.0.0.1" in controller.registry_error and name in controller.registry_error,
             "the registry error")
        assert controller.ready and not controller.invalid  # not an invalid commit: the registry's fault
        assert storage_uri() == ml.stored(mlflow.url, runs[0])  # the last good state stays
        config_file.write_text(config_file.read_text().replace(dead, mlflow.url))
        subprocess.run([*GIT, "commit", "-qam", "registry back"], cwd=work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True, capture_output=True)

        def scaled() -> bool:
            with Cluster.connect(str(kubeconfig)) as cluster:
                obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), "scorer", "reg")
            return obj is not None and obj["spec"]["predictor"].get("minReplicas") == 2
        wait(scaled, "the next good commit applied")
    finally:
        controller.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
