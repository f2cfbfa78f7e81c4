"""deploy/ui-ingress.yaml fits the install it is applied next to: its Ingress reaches the
Service it defines, on the port the README tells the agent to serve the UI on (AGENT_UI_ADDR),
which its NetworkPolicy admits, on the pods of the base Deployment; the auth file the README
names is where the Deployment mounts the UI's Secret; the port-forward recipe forwards the
Deployment's HTTP port. (tests/integration/test_ui_ingress_dry_run.py has the API server
accept it.)"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from agent.controller import parse_http_addr

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAMESPACE = "modelops-system"


def ui_ingress() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "ui-ingress.yaml").read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) == 3 and set(by_kind) == {"Service", "NetworkPolicy", "Ingress"}
    return by_kind


def deployment() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def readme() -> str:
    return (DEPLOY / "README.md").read_text(encoding="utf-8")


def ui_port() -> int:
    """The port of AGENT_UI_ADDR as the README sets it, read by the agent's own parser."""
    addrs = set(re.findall(r"AGENT_UI_ADDR=(\S+?)[`,\s]", readme() + (DEPLOY / "ui-ingress.yaml").read_text()))
    assert len(addrs) == 1, addrs
    return parse_http_addr(addrs.pop())[1]


def test_the_ingress_reaches_the_ui_port_of_the_agents_pods() -> None:
    docs = ui_ingress()
    service, policy, ingress = docs["Service"], docs["NetworkPolicy"], docs["Ingress"]
    assert {d["metadata"]["namespace"] for d in docs.values()} == {NAMESPACE}
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    port = ui_port()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert backends and all(b["name"] == service["metadata"]["name"] for b in backends)
    for backend in backends:
        assert ports[backend["port"]["name"]]["targetPort"] == port
    admitted = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert port in admitted
    http = {p["name"]: p["containerPort"] for c in deployment()["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]}
    assert port not in http.values()  # a port of its own: the Ingress never reaches /metrics or /webhook
    assert ingress["spec"]["tls"] and all(p["pathType"] == "Prefix" for r in ingress["spec"]["rules"]
                                          for p in r["http"]["paths"])


def test_the_ui_auth_file_is_where_the_deployment_mounts_its_secret() -> None:
    text = readme()
    files = set(re.findall(r"AGENT_UI_AUTH_FILE=(/\S+?)[`,\s]", text))
    assert len(files) == 1, files
    path = PurePosixPath(files.pop())
    spec = deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for c in spec["containers"] for m in c["volumeMounts"]}
    mount = mounts[str(path.parent)]
    secret = volumes[mount["name"]]["secret"]
    assert mount["readOnly"] and secret["optional"]
    assert secret["secretName"] == "modelops-agent-ui-auth"
    assert f"--from-file={path.name}" in text  # the README's Secret has the file under that key
    assert secret["secretName"] in (DEPLOY / "ui-ingress.yaml").read_text()


def test_the_port_forward_recipe_forwards_the_agents_http_port() -> None:
    m = re.search(r"kubectl -n (\S+) port-forward deploy/(\S+) (\d+)", readme())
    assert m is not None
    dep = deployment()
    assert m[1] == NAMESPACE and m[2] == dep["metadata"]["name"]
    http = {p["name"]: p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert int(m[3]) == http["http"]
    assert "--http-addr=:8080" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
