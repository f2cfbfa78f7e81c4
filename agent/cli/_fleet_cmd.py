"""diff, apply and status across the clusters of a repo's environments: each cluster in its
environment's order, one Engine per cluster and target ("<repo>-<environment>"); a cluster
that cannot be reached (short timeouts) is reported and the others are still done.
Imported by agent.cli._live_cmd when the repo declares environments."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

from agent import engine
from agent.cli._common import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    echo,
    repo_path,
    selection,
    visible,
    warn,
    write_document,
)
from agent.cli._connect import connect_named
from agent.cli._envs import Scope, show_sections
from agent.cli._show import print_status
from agent.engine import Desired, Engine, EngineOptions, status_ok
from agent.errors import AgentError
from agent.plan import Plan


def _clusters(args: argparse.Namespace, whole: Desired, found: list[Scope]) -> Iterator[tuple[Scope, str, Desired]]:
    """(scope, cluster, that environment's Desired, registry references resolved) in order."""
    path = repo_path(args)
    for scope in found:
        desired = engine.for_environment(whole, scope.environment, path)
        for name in scope.clusters:
            yield scope, name, desired


def diff(args: argparse.Namespace, whole: Desired, found: list[Scope]) -> int:
    """Each selected cluster against its environment's desired state: exit 1 when one has
    changes, 2 when one could not be planned (the others are shown)."""
    sections: list[tuple[str, Plan | str]] = []
    for scope, name, desired in _clusters(args, whole, found):
        try:
            with connect_named(args, name) as cluster:
                eng = Engine(cluster, EngineOptions(inventory_namespace=args.inventory_namespace, warn=warn))
                sections.append((f"{scope.environment}/{name}", selection(args).plan(eng.plan(desired).plan)))
        except AgentError as exc:
            sections.append((f"{scope.environment}/{name}", str(exc)))
    show_sections(sections, args)
    if any(isinstance(p, str) for _, p in sections):
        return EXIT_ERROR
    return EXIT_CHANGES if any(isinstance(p, Plan) and p.has_changes for _, p in sections) else EXIT_OK


def apply(args: argparse.Namespace, whole: Desired, found: list[Scope]) -> int:
    """Every selected cluster in its environment's order, one Engine each; a cluster that fails
    does not stop the next ones (exit 2 then). -o json|yaml: {"clusters": [{environment,
    cluster, target, ok, error, plan, results, requests, status}]}."""
    from agent.cli._live_cmd import _apply, applied_code, applied_document, apply_options, print_applied

    entries: list[dict[str, Any]] = []
    code = EXIT_OK
    for scope, name, desired in _clusters(args, whole, found):
        entry: dict[str, Any] = {"environment": scope.environment, "cluster": name,
                                 "target": desired.spec.config.name, "ok": False, "error": None}
        if args.output == "text":
            echo(f"== {scope.environment}/{name} (target {desired.spec.config.name}) ==")
        try:
            # the audit records name the cluster and environment (both production clusters share a target)
            options = dataclasses.replace(apply_options(args, desired),
                                          audit_fields={"cluster": name, "environment": scope.environment})
            outcome, status = _apply(args, desired, options, partial(connect_named, args, name))
        except AgentError as exc:
            entry["error"] = str(exc)
            code = EXIT_ERROR
            if args.output == "text":
                print(visible(f"error: cluster {name}: {exc}"), file=sys.stderr)
                print(visible(f"not applied: {exc}"))
            entries.append(entry)
            continue
        one = applied_code(outcome, status, args)
        if args.output == "text":
            print_applied(outcome, status, args)
        entry.update(applied_document(outcome, status), ok=one == EXIT_OK)
        entries.append(entry)
        code = max(code, one)
    if args.output != "text":
        write_document({"clusters": entries}, args.output)
    else:
        failed = [f"{e['environment']}/{e['cluster']}" for e in entries if not e["ok"]]
        if failed:
            print(visible(f"error: {len(failed)} of {len(entries)} cluster(s) not applied cleanly: "
                          f"{', '.join(failed)}"), file=sys.stderr)
    return code


def status(args: argparse.Namespace, whole: Desired, found: list[Scope]) -> int:
    """The status of every selected cluster: without --env/--cluster the model x
    environment/cluster matrix, with them the usual table per cluster. Exit 0 when every cluster
    answered and all its models are synced and Healthy, 1 otherwise."""
    doc: dict[str, Any] = {"environments": []}
    good = True
    by_env: dict[str, dict[str, Any]] = {}
    for scope, name, desired in _clusters(args, whole, found):
        env = by_env.get(scope.environment)
        if env is None:
            env = by_env[scope.environment] = {"name": scope.environment, "target": desired.spec.config.name,
                                               "clusters": []}
            doc["environments"].append(env)
        entry: dict[str, Any] = {"name": name, "reachable": False, "error": None, "commit": "", "models": []}
        try:
            with connect_named(args, name) as cluster:
                one = Engine(cluster, EngineOptions(inventory_namespace=args.inventory_namespace)).status(desired,
                                                                                                           warn=warn)
        except AgentError as exc:
            entry["error"] = str(exc)
            good = False
        else:
            listed = one["models"]
            assert isinstance(listed, list)
            models = [m for m in listed if selection(args).model(m["namespace"], m["name"])]
            mark = one.get("lastSync")
            entry.update(reachable=True, commit=str(mark.get("commit") or "") if isinstance(mark, dict) else "",
                         models=models)
            good = good and status_ok(dict(one, models=models), args.allow_unknown)
        env["clusters"].append(entry)
    if args.output != "text":
        write_document(doc, args.output)
    elif args.env is None and args.cluster is None:
        print_matrix(doc, [m.key for m in whole.spec.models if selection(args).model(m.namespace, m.name)])
    else:
        for env in doc["environments"]:
            for entry in env["clusters"]:
                echo(f"== {env['name']}/{entry['name']} (target {env['target']}) ==")
                if entry["reachable"]:
                    print_status({"models": entry["models"]})
                else:
                    echo(f"unreachable: {entry['error']}")
    for env in doc["environments"]:
        for entry in env["clusters"]:
            if not entry["reachable"]:
                print(visible(f"error: cluster {entry['name']} ({env['name']}): {entry['error']}"), file=sys.stderr)
    return EXIT_OK if good else EXIT_CHANGES


def cell(model: dict[str, Any] | None) -> str:
    """A model in one cluster: the version (`12->13` while it serves 12 and Git says 13),
    +canary@traffic, the health, and whether it is synced."""
    if model is None:
        return "-"
    canary = model.get("canary")
    version, live = str(model["version"]), model.get("liveVersion")
    if live and live != version:  # what serves, and what Git says it should
        version = f"{live}->{version}"
    if canary:
        traffic = canary.get("traffic")
        version += f" +{canary['version']}" + (f"@{traffic}%" if traffic is not None else "")
    synced = "" if model.get("synced") is True else " out-of-sync" if model.get("synced") is False else " sync?"
    return f"{version} {model['health']}{synced}"


def print_matrix(doc: dict[str, Any], declared: list[str]) -> None:
    """Rows: models (those `declared` in the repo, and any a cluster still runs); columns:
    environment/cluster; the last row each cluster's synced commit."""
    columns = [(f"{env['name']}/{c['name']}", c) for env in doc["environments"] for c in env["clusters"]]
    keys = sorted({*declared, *(f"{m['namespace']}/{m['name']}" for _, c in columns for m in c["models"])})
    rows = [["MODEL", *(title for title, _ in columns)]]
    for key in keys:
        row = [key]
        for _, c in columns:
            found = next((m for m in c["models"] if f"{m['namespace']}/{m['name']}" == key), None)
            row.append(cell(found) if c["reachable"] else "unreachable")
        rows.append(row)
    rows.append(["commit", *((c["commit"][:12] or "-") if c["reachable"] else "unreachable" for _, c in columns)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
