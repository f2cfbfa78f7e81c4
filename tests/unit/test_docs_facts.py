"""The docs say what the code does, and speak to users, not to the agent's developers.

- no issue number in user-facing text: docs, README, deploy/, examples/, every command's help;
- docs/spec.md names every field of the schemas (docs/rollouts.md those of spec.rollout) and
  every value of the Monitor's `action`;
- deploy/README's RBAC table names every resource deploy/base/rbac.yaml grants;
- docs/registries.md names no Python internals, says `trackingUri` is http(s) and that MLflow
  versions serve their storage location;
- the example repo's comments state the resources precedence docs/spec.md states."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent import cli

ROOT = Path(__file__).resolve().parents[2]
ISSUE = re.compile(r"issue #\d+|\(issue \d+\)", re.IGNORECASE)


def user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for directory in ("deploy", "examples"):
        files += sorted(p for p in (ROOT / directory).rglob("*") if p.is_file() and p.suffix in (".md", ".yaml", ".yml"))
    return files


@pytest.mark.parametrize("path", user_facing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_numbers_in_docs(path: Path) -> None:
    found = [f"{n}: {line}" for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if ISSUE.search(line)]
    assert not found


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_issue_numbers_in_help() -> None:
    found = [p.prog for p in _parsers(cli.build_parser()) if ISSUE.search(p.format_help())]
    assert not found


COMMON_TYPES = {"resources", "env", "labels", "annotations"}  # section 2 of spec.md describes their fields


def _fields(node: dict[str, object], prefix: str) -> Iterator[str]:
    """`spec.x`, `spec.versions[].y`, ... of a schema, two levels below spec at most."""
    properties = node.get("properties")
    if not isinstance(properties, dict):
        return
    for key, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        name = f"{prefix}.{key}"
        yield name
        if name.count(".") >= 3 or key in COMMON_TYPES:
            continue
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            yield from _fields(sub["items"], name + "[]")  # type: ignore[arg-type]
        else:
            yield from _fields(sub, name)


def _schema(kind: str) -> dict[str, object]:
    from agent.spec._schema import SCHEMA_FILES, _inline

    directory = ROOT / "schemas"
    defs = json.loads((directory / "_defs.schema.json").read_text())["$defs"]
    return _inline(json.loads((directory / SCHEMA_FILES[kind]).read_text()), defs)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["Model", "Monitor", "RepositoryConfig", "ServingRuntime"])
def test_spec_md_names_every_field(kind: str) -> None:
    spec_md = (ROOT / "docs" / "spec.md").read_text()
    rollouts_md = (ROOT / "docs" / "rollouts.md").read_text()
    schema = _schema(kind)
    spec = schema["properties"]["spec"]  # type: ignore[index]
    missing = []
    for name in _fields(spec, "spec"):  # type: ignore[arg-type]
        doc = rollouts_md if name.startswith("spec.rollout") else spec_md
        # an object is named by its own row or by rows of its fields (`spec.defaults.namespace`)
        if not any(f"`{written}" in doc for written in (f"{name}`", f"{name}.", f"{name}[]")):
            missing.append(name)
    assert not missing


def test_spec_md_names_every_monitor_action() -> None:
    rule = _schema("Monitor")["properties"]["spec"]["properties"]["rules"]["items"]  # type: ignore[index]
    actions = rule["properties"]["action"]["enum"]
    row = next(line for line in (ROOT / "docs" / "spec.md").read_text().splitlines()
               if line.startswith("| `spec.rules[].action`"))
    assert all(f"`{a}`" in row for a in actions), (actions, row)
    assert "should end the canary" not in row  # what it did before it ended the running rollout


def test_deploy_readme_names_every_granted_resource() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    table = readme.split("## RBAC: what is granted, and why", 1)[1].split("\n## ", 1)[0]
    granted = set()
    for doc in yaml.safe_load_all((ROOT / "deploy" / "base" / "rbac.yaml").read_text()):
        for rule in (doc or {}).get("rules", []):
            for resource in rule.get("resources", []):
                group = rule["apiGroups"][0]
                granted.add(f"{group}/{resource}" if group not in ("", "apps", "autoscaling", "coordination.k8s.io",
                                                                   "serving.kserve.io", "monitoring.coreos.com")
                            else resource)
    assert granted
    missing = sorted(r for r in granted if f"`{r}`" not in table)
    assert not missing


def test_registries_md_speaks_to_users() -> None:
    text = (ROOT / "docs" / "registries.md").read_text()
    for internal in ("resolve_spec", "pipeline.", "agent.resolve", "GtoRegistry(", "MlflowRegistry(", "summary_lines",
                     "RegistryError"):
        assert internal not in text, internal
    assert text.startswith("# Model registries\n")
    assert "`trackingUri` must be an `http://` or `https://` URL" in text
    assert "passed through as the registry gives it" not in text
    assert "serves the bucket path MLflow stored it under" in text


def test_example_comments_state_the_resources_precedence() -> None:
    for path in (ROOT / "examples").rglob("*.yaml"):
        text = path.read_text()
        assert "defaults.resources in repo.yaml, if set) win" not in text, path
    runtime = (ROOT / "examples" / "model-repo" / "runtimes" / "sklearn-server.yaml").read_text()
    assert "defaults.resources in repo.yaml only fills what neither sets" in runtime
