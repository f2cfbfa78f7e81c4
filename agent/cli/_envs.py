"""Environments on the command line: `agent environments`, and what --env / --cluster select
(render, diff, apply, status). Offline: reading the repo needs no cluster."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent import desired as desired_state
from agent import output
from agent.cli._args import add_output, add_source
from agent.cli._common import EXIT_OK, echo, repo_path, signers, visible, write_document
from agent.cli._show import use_color
from agent.desired import environment_order
from agent.errors import AgentError
from agent.plan import Plan
from agent.spec import Spec, environment, environment_of_cluster


@dataclass(frozen=True)
class Scope:
    """One environment and the clusters of it a command works on (in wave order)."""

    environment: str
    clusters: tuple[str, ...]


def scopes(spec: Spec, args: argparse.Namespace) -> list[Scope] | None:
    """What --env and --cluster select: None for a repo without environments (neither given);
    every environment when neither is given. AgentError (exit 2) for a flag that selects nothing."""
    name, cluster = getattr(args, "env", None), getattr(args, "cluster", None)
    if not spec.environments:
        if name is not None or cluster is not None:
            flag = "--env" if name is not None else "--cluster"
            raise AgentError(f"{flag}: the repo declares no environments (no kind: Environment); "
                             "run without it (or --context NAME for a kubeconfig context)")
        return None
    if getattr(args, "context", None):
        raise AgentError("--context on a repo with environments: each cluster of an environment is the kubeconfig "
                         "context of its name; select them with --env NAME or --cluster NAME")
    if cluster is not None:
        env = environment(spec, name) if name is not None else environment_of_cluster(spec, cluster)
        if cluster not in env.clusters:
            raise AgentError(f"cluster {cluster!r} is not in environment {env.name!r} (its clusters: "
                             f"{', '.join(env.clusters)})")
        return [Scope(env.name, (cluster,))]
    if name is not None:
        env = environment(spec, name)
        return [Scope(env.name, env.clusters)]
    return [Scope(e.name, e.clusters) for e in environment_order(spec)]


def needs_scope(spec: Spec, args: argparse.Namespace, command: str) -> list[Scope] | None:
    """scopes(), refusing a repo with environments and neither flag (a command that writes to or
    reads from clusters must be told which)."""
    found = scopes(spec, args)
    if found is not None and getattr(args, "env", None) is None and getattr(args, "cluster", None) is None:
        names = ", ".join(e.name for e in environment_order(spec))
        raise AgentError(f"the repo declares environments ({names}): agent {command} needs --env NAME or "
                         "--cluster NAME")
    return found


def environments_document(spec: Spec) -> list[dict[str, Any]]:
    return [{"name": e.name, "clusters": list(e.clusters), "promotesFrom": e.promotes_from, "soak": e.soak,
             "promotion": e.promotion, "target": f"{spec.config.name}-{e.name}"} for e in environment_order(spec)]


def cmd_environments(args: argparse.Namespace) -> int:
    path = repo_path(args)
    spec = desired_state.load_desired(path, args.revision, resolve=False, keyless="skip").spec
    doc = environments_document(spec)
    if args.output != "text":
        write_document(doc, args.output)
        return EXIT_OK
    if not doc:
        print(f"{path} declares no environments (no kind: Environment): one target, {spec.config.name}")
        return EXIT_OK
    print(f"{'ENVIRONMENT':<20} {'CLUSTERS':<36} {'PROMOTES FROM':<16} {'SOAK':<8} {'PROMOTION':<12} TARGET")
    for e in doc:
        echo(f"{e['name']:<20} {', '.join(e['clusters']):<36} {e['promotesFrom'] or '-':<16} {e['soak']:<8} "
             f"{e['promotion']:<12} {e['target']}")
    return EXIT_OK


def rendered(args: argparse.Namespace, path: str) -> list[tuple[str, desired_state.Desired]]:
    """The desired state(s) render shows: [("", the repo's)] without environments, else each
    environment --env/--cluster selects (every one without them, a note on stderr says so)."""
    whole = desired_state.load_desired(path, args.revision, signers=signers(args), resolve=False)
    found = scopes(whole.spec, args)
    if found is None:
        return [("", desired_state.resolve_registries(whole, path))]
    if args.env is None and args.cluster is None:
        print(visible(f"note: rendering every environment ({', '.join(s.environment for s in found)}), each "
                      "preceded by a comment naming it; --env NAME renders one"), file=sys.stderr)
    return [(s.environment, desired_state.for_environment(whole, s.environment, path)) for s in found]


def show_sections(sections: Sequence[tuple[str, Plan | str]], args: argparse.Namespace) -> None:
    """Plans grouped by environment (or environment/cluster), a section that could not be
    planned as its error: markdown one comment, json/yaml {"environments": [{"name", "plan",
    "error"}]}, text a heading per section."""
    if args.output == "markdown":
        sys.stdout.write(output.markdown_grouped(sections))
    elif args.output in ("json", "yaml"):
        write_document({"environments": [
            {"name": n, "plan": output.as_dict(p) if isinstance(p, Plan) else None,
             "error": None if isinstance(p, Plan) else p} for n, p in sections]}, args.output)
    else:
        for name, plan in sections:
            echo(f"== {name} ==")
            if not isinstance(plan, Plan):
                echo(f"error: {plan}")
            elif not plan.has_changes and not plan.conflicts:
                print("no changes")
            else:
                sys.stdout.write(output.text(plan, color=use_color(args.color)))


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("environments", help="list the repo's environments and their clusters (no cluster contacted)")
    add_source(p)
    add_output(p, "text (default): a table; json or yaml: a list of {name, clusters, promotesFrom, soak, promotion, "
                  "target}; an empty list for a repo without environments")
    p.set_defaults(handler=cmd_environments)
