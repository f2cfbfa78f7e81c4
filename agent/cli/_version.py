"""`agent version` and `agent --version`: the agent's version and the Kubernetes/CRD versions it
was tested with."""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from agent.cli._args import add_output
from agent.cli._common import EXIT_OK, write_document


def tested_with(root: Path | None = None) -> dict[str, str]:
    """Kubernetes, KServe and Prometheus-Operator versions the agent was tested with, read from
    tools/k8s/go.mod and tools/k8s/crds.env when the source tree is there ("unknown" if not)."""
    tools = (root or Path(__file__).resolve().parents[2]) / "tools" / "k8s"
    found = {"Kubernetes": "unknown", "KServe": "unknown", "Prometheus Operator": "unknown"}
    try:
        match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (tools / "go.mod").read_text(), re.MULTILINE)
        if match:
            found["Kubernetes"] = match.group(1)
    except OSError:
        pass
    try:
        env = dict(line.split("=", 1) for line in (tools / "crds.env").read_text().splitlines()
                   if "=" in line and not line.lstrip().startswith("#"))
        found["KServe"] = env.get("KSERVE_VERSION", "unknown").strip() or "unknown"
        found["Prometheus Operator"] = env.get("PROMETHEUS_OPERATOR_VERSION", "unknown").strip() or "unknown"
    except OSError:
        pass
    return found


def agent_version() -> str:
    try:
        return metadata.version("modelops-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_text() -> str:
    tested = ", ".join(f"{name} {version}" for name, version in tested_with().items())
    return f"agent {agent_version()}\ntested with: {tested}\n"


class VersionAction(argparse.Action):
    """`agent --version`: the text of `agent version`, then exit 0."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        sys.stdout.write(_version_text())
        parser.exit(EXIT_OK)


def cmd_version(args: argparse.Namespace) -> int:
    if args.output != "text":
        write_document({"version": agent_version(), "testedWith": tested_with()}, args.output)
    else:
        sys.stdout.write(_version_text())
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="the agent's version and the Kubernetes/CRD versions it was tested with")
    add_output(p, "text (default); json or yaml: {version, testedWith}")
    p.set_defaults(handler=cmd_version)
