"""Find the control-plane binaries by running tools/k8s/build.sh (fast when cached)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent.devcluster._errors import DevclusterError

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def repo_root() -> Path:
    """$AGENT_REPO_ROOT, else the checkout this package lives in."""
    env = os.environ.get("AGENT_REPO_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def binaries() -> Path:
    """Build (or reuse) the pinned control plane; its cache dir (with bin/ and crds/)."""
    script = repo_root() / "tools" / "k8s" / "build.sh"
    if not script.is_file():
        raise DevclusterError(f"{script} not found; set AGENT_REPO_ROOT to the agent checkout")
    # stderr (build progress) goes to the caller's terminal; stdout ends with the cache dir.
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise DevclusterError(f"{script} failed with exit code {result.returncode}")
    cache = Path(lines[-1])
    missing = [b for b in BINARIES if not os.access(cache / "bin" / b, os.X_OK)]
    if missing:
        raise DevclusterError(f"{script} left no {', '.join(missing)} in {cache / 'bin'}")
    return cache
