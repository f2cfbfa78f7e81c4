"""The `devenv` command: `devenv demo`, `devenv cluster up|down|status` and `devenv fleet up|down|status`.

Options, outputs and exit codes as the agent's own commands have them: 0 done (status: ready),
1 (status: not ready), 2 an error, said on stderr as `error: ...`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.cli import run_guarded
from agent.output import FORMATS, document, plain, visible
from devenv import cluster, fleet
from devenv.demo import run_demo, run_promotion_demo

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def _cmd_cluster(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if args.action == "up":
        info = cluster.up(directory)
        if info.message:
            print(f"note: {info.message}", file=sys.stderr)
        print(f"cluster ready: kubeconfig={info.kubeconfig}")
        return EXIT_OK
    if args.action == "down":
        if cluster.is_forge(directory):  # the forge of `devenv demo --promotion --keep`: stopped, its data kept
            cluster.forge_down(directory)
            print(f"forge in {directory} stopped")
            return EXIT_OK
        cluster.down(directory)
        print(f"cluster in {directory} stopped")
        return EXIT_OK
    state = cluster.status(directory)
    if args.output != "text":
        sys.stdout.write(document(state, args.output))
        return EXIT_OK if state.get("ready") else EXIT_NOT_READY
    width = max(len(name) for name in state) + 1
    for name, value in state.items():
        print(visible(f"{name + ':':<{width}} {plain(value)}"))
    return EXIT_OK if state.get("ready") else EXIT_NOT_READY


def _cmd_fleet(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if args.action == "up":
        started = fleet.up(directory)
        for name, info in started.clusters.items():
            if info.message:
                print(f"note: {name}: {info.message}", file=sys.stderr)
        print(f"fleet ready: kubeconfig={started.kubeconfig} contexts={','.join(started.clusters)}")
        return EXIT_OK
    if args.action == "down":
        fleet.down(directory)
        print(f"fleet in {directory} stopped")
        return EXIT_OK
    state = fleet.status(directory)
    code = EXIT_OK if state["ready"] else EXIT_NOT_READY
    if args.output != "text":
        sys.stdout.write(document(state, args.output))
        return code
    print(visible(f"ready:      {plain(state['ready'])}"))
    print(visible(f"kubeconfig: {plain(state['kubeconfig'])}"))
    rows = [("CONTEXT", "READY", "SERVER", "DIRECTORY")]
    for member in state["clusters"]:
        ready = "paused" if member["paused"] else plain(member["ready"])
        rows.append((str(member["name"]), ready, plain(member["server"]), str(member["directory"])))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(visible("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3]))
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.promotion:
        return run_promotion_demo(Path(args.dir), keep=args.keep)
    return run_demo(Path(args.dir), keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devenv", description="The agent's local environment: a local control plane, forge, Prometheus and "
                                   "MLflow for the tests, and the demo on them. Not part of the agent.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="local control plane + the example repo, end to end")
    p.add_argument("--dir", default=".devcluster/demo", help="state directory for the demo cluster")
    p.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    p.add_argument("--promotion", action="store_true",
                   help="the PR-driven story instead, with a local Gitea: PR opened by agent promote, plan "
                        "commented, merged, applied through the push webhook, audited")
    p.set_defaults(handler=_cmd_demo)

    dc = sub.add_parser("cluster", help="local etcd + kube-apiserver + controllers + kwok")
    dc_sub = dc.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    for action, text in (("up", "start the local control plane (reuses a running one; builds it on first use)"),
                         ("down", "stop it"),
                         ("status", "what runs where (exit 0 ready, 1 not)")):
        d = dc_sub.add_parser(action, help=text, description=text)
        d.add_argument("--dir", default=".devcluster", help="state directory (default .devcluster)")
        if action == "status":
            d.add_argument("-o", "--output", choices=FORMATS, default="text",
                           help="output format: text (default): one line per field; json or yaml: {ready, "
                                "directory, server, kubeconfig, node, pids, running, paused, ports}")
        d.set_defaults(handler=_cmd_cluster)

    fl = sub.add_parser("fleet", help=f"local clusters {', '.join(fleet.NAMES)} and one kubeconfig for them")
    fl_sub = fl.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    for action, text in (("up", f"start the clusters {', '.join(fleet.NAMES)} under DIR/<name> (in parallel; "
                                "running ones reused) and write DIR/kubeconfig with a context per cluster"),
                         ("down", "stop them all and remove DIR/kubeconfig"),
                         ("status", "each cluster's state (exit 0 all ready, 1 not)")):
        d = fl_sub.add_parser(action, help=text, description=text)
        d.add_argument("--dir", default=".devcluster/fleet", help="state directory (default .devcluster/fleet)")
        if action == "status":
            d.add_argument("-o", "--output", choices=FORMATS, default="text",
                           help="output format: text (default): a table; json or yaml: {ready, directory, "
                                "kubeconfig, clusters: [{name, ready, server, paused, directory}]}")
        d.set_defaults(handler=_cmd_fleet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return run_guarded(handler, args)
