"""deploy/ui-ingress.yaml is accepted by a real API server (the local control plane): a
server-side dry run of its Service, NetworkPolicy and Ingress, moved to a fresh namespace so
nothing of the install's namespace is touched (and a dry run creates nothing anyway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def test_the_ui_ingress_example_is_accepted_by_the_api_server(kubeconfig: Path, namespace: str) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "ui-ingress.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "--dry-run=server", "-o", "name",
                           "-f", "-"], input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["ingress.networking.k8s.io/modelops-agent-ui",
                                           "networkpolicy.networking.k8s.io/modelops-agent-ui",
                                           "service/modelops-agent-ui"]
