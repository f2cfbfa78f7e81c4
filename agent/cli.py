"""Command line: parse flags, call one function per command, map results to exit codes.

Exit codes (like `kubectl diff`): 0 success / no change, 1 changes found (diff) or a check
failed (audit verify), 2 error (bad input, cluster unreachable, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

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
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
