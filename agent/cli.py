"""Command line: parse flags, call one function per command, map results to exit codes.

Exit codes (like `kubectl diff`): 0 success / no change, 1 changes found (diff) or a check
failed (audit verify), 2 error (bad input, cluster unreachable, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AgentError, ValidationFailed

if TYPE_CHECKING:
    from agent.plan import Plan

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def _cmd_devcluster(args: argparse.Namespace) -> int:
    from agent import devcluster

    directory = Path(args.dir)
    if args.action == "up":
        info = devcluster.up(directory)
        print(f"cluster ready: kubeconfig={info.kubeconfig}")
        return EXIT_OK
    if args.action == "down":
        devcluster.down(directory)
        print(f"cluster in {directory} stopped")
        return EXIT_OK
    state = devcluster.status(directory)
    for name, value in state.items():
        print(f"{name}: {value}")
    return EXIT_OK if state.get("ready") else EXIT_CHANGES


def _cmd_validate(args: argparse.Namespace) -> int:
    from agent.pipeline import load_desired

    desired = load_desired(args.path, args.revision)
    spec = desired.spec
    print(
        f"ok: {args.path} @ {desired.revision.short}: {len(spec.models)} models, "
        f"{len(spec.monitors)} monitors, {len(spec.runtimes)} runtimes, "
        f"{len(spec.manifests)} manifests -> {len(desired.objects)} objects"
    )
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    import json

    from agent.output import to_yaml
    from agent.pipeline import load_desired

    objects = load_desired(args.path, args.revision).objects
    if args.output == "json":
        doc = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write("---\n".join(to_yaml(o) for o in objects))
    return EXIT_OK


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_plan(plan: Plan, args: argparse.Namespace) -> None:
    from agent import output

    if args.output == "json":
        sys.stdout.write(output.as_json(plan))
    elif args.output == "markdown":
        sys.stdout.write(output.markdown(plan))
    else:
        sys.stdout.write(output.text(plan, color=_use_color(args.color)))


def _cmd_diff(args: argparse.Namespace) -> int:
    if args.base is None:
        from agent.reconcile import live_plan

        plan = live_plan(args.path, args.revision, kubeconfig=args.kubeconfig, context=args.context)
    else:
        from agent.pipeline import offline_plan

        plan = offline_plan(args.path, args.base, args.revision)
    _print_plan(plan, args)
    return EXIT_CHANGES if plan.has_changes else EXIT_OK


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    p.add_argument("--revision", help="read this git commit/branch/tag instead of the working tree")


def _add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--context", help="kubeconfig context")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate a model repo (exit 0 valid, 2 invalid)")
    _add_source(p)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("render", help="print the Kubernetes objects a model repo renders to")
    _add_source(p)
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(handler=_cmd_render)

    p = sub.add_parser("diff", help="what would change (exit 0 none, 1 changes, 2 error)")
    _add_source(p)
    p.add_argument("--base", help="compare against this git revision instead of the live cluster")
    p.add_argument("-o", "--output", choices=["text", "json", "markdown"], default="text")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    _add_cluster(p)
    p.set_defaults(handler=_cmd_diff)

    dc = sub.add_parser("devcluster", help="local etcd + kube-apiserver + controllers + kwok")
    dc.add_argument("action", choices=["up", "down", "status"])
    dc.add_argument("--dir", default=".devcluster", help="state directory (default .devcluster)")
    dc.set_defaults(handler=_cmd_devcluster)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValidationFailed as exc:
        print(f"error: {len(exc.errors)} problem(s) in the model repo:", file=sys.stderr)
        for error in exc.errors:
            print(str(error), file=sys.stderr)
        return EXIT_ERROR
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
