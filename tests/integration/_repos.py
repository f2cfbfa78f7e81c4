"""Synthetic model repos for the fault tests: N KServe models (no pods to schedule) under one
target, in namespaces of their own, so tests on the shared cluster never touch each other."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import yaml

from bench.offline import RUNTIMES, _model, _monitor

API = "modelops.dev/v1alpha1"
GIT = ["git", "-c", "user.name=Tester", "-c", "user.email=tester@modelops.invalid", "-c", "commit.gpgsign=false"]


def _write(root: Path, rel: str, docs: list[dict[str, Any]]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")


def committed(work: Path, docs: dict[str, list[dict[str, Any]]], message: str) -> Path:
    """`docs` (path -> documents) written in `work`, committed on main, and cloned bare beside
    it as remote.git (returned)."""
    work.mkdir(parents=True, exist_ok=True)
    for rel, content in docs.items():
        _write(work, rel, content)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", message], cwd=work, check=True)
    bare = work.parent / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def model_path(root: Path, prefix: str, i: int) -> Path:
    return root / "models" / f"{prefix}-{i % 3}" / f"model-{i:04d}.yaml"


def make_repo(root: Path, target: str, prefix: str, n: int, *, secret: dict[str, Any] | None = None) -> Path:
    """A git repo (one commit) of n KServe models in namespaces prefix-0..2, target `target`."""
    rng = random.Random(7)
    root.mkdir(parents=True)
    namespaces = [f"{prefix}-{k}" for k in range(3)]
    _write(root, "repo.yaml", [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": target},
                                "spec": {"policy": {"allowedNamespaces": [f"{prefix}-*"],
                                                    "pruneBudget": {"maxFraction": 1.0, "maxCount": 10000}}}}])
    for name, (image, formats) in RUNTIMES.items():
        _write(root, f"runtimes/{name}.yaml", [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": name},
                                                "spec": {"image": image, "formats": formats, "port": 8080}}])
    infra: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces]
    if secret is not None:
        infra.append(secret)
    _write(root, "infra/namespaces.yaml", infra)
    for i in range(n):
        m = _model(i, rng)
        ns = namespaces[i % 3]
        m["metadata"]["namespace"] = ns
        m["metadata"]["labels"] = {"team": ns}
        m["spec"]["backend"] = "kserve"
        m["spec"]["owner"] = f"{ns}@acme.example"
        m["spec"]["runtime"] = {"sklearn": "sklearn-server", "xgboost": "xgboost-server", "onnx": "triton"}[m["spec"]["format"]]
        if "autoscaling" in m["spec"]:
            m["spec"]["autoscaling"]["metric"] = "rps"
        for v in m["spec"]["versions"]:
            v["uri"] = v["uri"].replace("team-", f"{prefix}-")
        docs = [m, _monitor(m)] if i % 3 == 1 else [m]
        path = model_path(root, prefix, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    commit(root, "initial")
    return root


def commit(root: Path, message: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", message], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"


def renamed_example(dest: Path, target: str, renamed: dict[str, str]) -> Path:
    """examples/model-repo copied to dest as target `target`, its namespaces renamed (e.g.
    fraud -> dep-fraud), so a test applies it to the shared cluster without touching others'.
    Its SOPS-encrypted Secret is left out (test_sops_apply.py re-encrypts it renamed)."""
    import re
    import shutil

    from agent.engine import load_desired

    shutil.copytree(EXAMPLE, dest)
    for path in dest.rglob("*.enc.yaml"):  # SOPS: its MAC covers the readable namespace too; a rename breaks it
        path.unlink()
    line = re.compile(r"(?m)^(\s*(?:namespace:|name:|-)\s*)(" + "|".join(renamed) + r")\s*$")
    for path in dest.rglob("*.yaml"):
        text = line.sub(lambda m: m.group(1) + renamed[m.group(2)], path.read_text(encoding="utf-8"))
        if path.name == "repo.yaml":
            text = text.replace("name: ml-platform", f"name: {target}", 1)
        path.write_text(text, encoding="utf-8")
    desired = load_desired(dest)
    assert desired.spec.config.name == target
    used = {o["metadata"].get("namespace") or o["metadata"]["name"] for o in desired.objects}
    assert used == set(renamed.values()), used  # nothing left in the original namespaces
    return dest
