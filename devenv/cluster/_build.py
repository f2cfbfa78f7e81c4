"""Find the control-plane binaries by running tools/k8s/build.sh (fast when cached)."""

from __future__ import annotations

import os
from pathlib import Path

from devenv.cluster._server import run_build

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kserve-webhook")


def repo_root() -> Path:
    """$AGENT_REPO_ROOT, else the checkout this package lives in (devenv/ is never installed elsewhere)."""
    env = os.environ.get("AGENT_REPO_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def binaries() -> Path:
    """Build (or reuse) the pinned control plane; its cache dir (with bin/ and crds/)."""
    return run_build(repo_root() / "tools" / "k8s" / "build.sh", lambda cache: ", ".join(
        f"bin/{b}" for b in BINARIES if not os.access(cache / "bin" / b, os.X_OK)))


def sops_binaries() -> Path:
    """Build (or reuse) the pinned sops, age and age-keygen (tools/sops: the tools that encrypt a
    model repo's Secrets); their cache dir (bin/)."""
    return run_build(repo_root() / "tools" / "sops" / "build.sh", lambda cache: ", ".join(
        f"bin/{b}" for b in ("sops", "age", "age-keygen") if not os.access(cache / "bin" / b, os.X_OK)))
