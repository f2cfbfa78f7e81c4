"""The offline commands: validate, render, and diff (against another revision with --base; the
live diff is the live group's). No cluster is contacted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from agent import desired as desired_state
from agent.cli import _envs as envs
from agent.cli._args import add_cluster, add_color, add_environment, add_filter, add_output, add_source, add_verify
from agent.cli._common import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    lazy,
    repo_path,
    selection,
    signers,
    visible,
    write_document,
)
from agent.cli._show import print_plan, warn_conflicts
from agent.errors import AgentError, ValidationFailed
from agent.output import to_yaml
from agent.plan import Plan, redact


def cmd_validate(args: argparse.Namespace) -> int:
    path = repo_path(args)
    if args.output != "text":
        return _validate_document(path, args)
    # offline: registry references by shape only; SOPS files skipped (and named) when no age identity is given
    desired = desired_state.load_desired(path, args.revision, resolve=False, keyless="skip")
    _note_unread(desired.unread)
    spec = desired.spec
    environments = f", {len(spec.environments)} environments" if spec.environments else ""
    print(
        f"ok: {path} @ {desired.revision.short}: {len(spec.models)} models, "
        f"{len(spec.monitors)} monitors, {len(spec.runtimes)} runtimes, "
        f"{len(spec.manifests)} manifests{environments} -> {_objects(desired)} objects"
    )
    return EXIT_OK


def _validate_document(path: str, args: argparse.Namespace) -> int:
    """validate -o json|yaml: {valid, path, revision, counts, errors}, errors as a list of
    {file, line, field, message}; exit 2 when invalid, as in text."""
    doc: dict[str, Any] = {"valid": True, "path": path, "revision": None, "counts": None, "errors": []}
    try:
        desired = desired_state.load_desired(path, args.revision, resolve=False, keyless="skip")
        _note_unread(desired.unread)
    except ValidationFailed as exc:
        doc.update(valid=False, revision=exc.revision or args.revision,
                   errors=[{"file": e.file, "line": e.line, "field": e.field, "message": e.message} for e in exc.errors])
    else:
        spec = desired.spec
        doc.update(revision=desired.revision.short, counts={
            "models": len(spec.models), "monitors": len(spec.monitors), "runtimes": len(spec.runtimes),
            "manifests": len(spec.manifests), "environments": len(spec.environments),
            "objects": _objects(desired)})
    write_document(doc, args.output)
    return EXIT_OK if doc["valid"] else EXIT_ERROR


def _objects(desired: desired_state.Desired) -> int:
    """The objects the repo renders to: with environments, those of every environment."""
    if not desired.spec.environments:
        return len(desired.objects)
    return sum(len(desired_state.for_environment(desired, e.name).objects) for e in desired.spec.environments)


def _note_unread(paths: Sequence[str]) -> None:
    if paths:
        print(visible(f"note: {len(paths)} SOPS-encrypted file(s) not validated, no age identity given "
                      f"(--sops-age-key-file FILE, or SOPS_AGE_KEY_FILE or SOPS_AGE_KEY): {', '.join(paths)}"),
              file=sys.stderr)


def cmd_render(args: argparse.Namespace) -> int:
    """The objects of the repo, or of each environment --env/--cluster selects (every one
    without them: yaml each environment's documents after a `# environment NAME` comment; json
    one v1 List of them all, each object labelled with its environment's target)."""
    sections = envs.rendered(args, repo_path(args))
    hidden, shown = 0, []
    for name, desired in sections:
        objects = desired.objects
        if not args.show_secrets:  # Secret values as markers, like diff and apply show them
            redacted = [redact(o) for o in objects]
            hidden += sum(1 for before, after in zip(objects, redacted, strict=True) if before is not after)
            objects = redacted
        shown.append((name, desired.spec.config.name, objects))
    if hidden:
        print(f"note: values of {hidden} Secret(s) redacted; --show-secrets prints them", file=sys.stderr)
    if args.output == "json":
        items = [o for _, _, objects in shown for o in objects]
        write_document({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}, "json")
        return EXIT_OK
    parts = []  # yaml, and text: manifests are read as YAML
    for name, target, objects in shown:
        head = visible(f"# environment {name} (target {target})") + "\n" if name else ""
        parts.append(head + "---\n".join(to_yaml(o) for o in objects))
    sys.stdout.write("---\n".join(parts))
    return EXIT_OK


_live_diff = lazy("_live_cmd", "cmd_diff")  # the live diff loads the kubernetes client; diff --base does not


def cmd_diff(args: argparse.Namespace) -> int:
    """Against --base (another revision) here; against the live cluster in the live group."""
    if args.base is None:
        return _live_diff(args)
    if args.cluster is not None:
        raise AgentError("--cluster with --base: an offline diff is per environment (--env NAME)")
    plans = desired_state.offline_plans(repo_path(args), args.base, args.revision, signers=signers(args),
                                        environment=args.env)
    if len(plans) == 1 and not plans[0][0]:  # a repo without environments
        return show_diff(plans[0][1], args)
    sections = [(name, selection(args).plan(plan)) for name, plan in plans]
    envs.show_sections(sections, args)
    for _, plan in sections:
        warn_conflicts(plan)
    return EXIT_CHANGES if any(plan.has_changes for _, plan in sections) else EXIT_OK


def show_diff(plan: Plan, args: argparse.Namespace) -> int:
    """The diff as asked (-o, -n/--model), its conflicts warned; exit 1 when it has changes."""
    plan = selection(args).plan(plan)
    print_plan(plan, args)
    warn_conflicts(plan)
    return EXIT_CHANGES if plan.has_changes else EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="validate a model repo (exit 0 valid, 2 invalid)")
    add_source(p)
    add_output(p, "text (default); json or yaml: {valid, path, revision, counts, errors}, each error "
                  "{file, line, field, message}")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("render", help="print the Kubernetes objects a model repo renders to")
    add_source(p)
    add_output(p, "yaml (default) or text: the documents separated by ---; json: one v1 List", default="yaml")
    p.add_argument("--show-secrets", action="store_true",
                   help="print Secret values (default: redacted markers, as in diffs)")
    add_environment(p, "render")
    add_verify(p)
    p.set_defaults(handler=cmd_render)

    p = sub.add_parser("diff", help="what would change (exit 0 none, 1 changes, 2 error)")
    add_source(p)
    add_filter(p, "diff")
    p.add_argument("--base", help="compare against this git revision instead of the live cluster")
    add_output(p, "text (default), json (docs/diff-json.md), yaml (the same document) or markdown (a PR comment)",
               extra=["markdown"])
    add_color(p)
    add_cluster(p)
    add_environment(p, "diff")
    add_verify(p)
    p.set_defaults(handler=cmd_diff)
