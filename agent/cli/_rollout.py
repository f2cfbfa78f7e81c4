"""`agent rollout status|abort|promote|pause|resume`: the flags, and who overrides. The commands
run from agent.cli._rollout_cmd, imported when one runs (it loads the kubernetes client)."""

from __future__ import annotations

import argparse
import getpass
import os
import socket

from agent.cli._args import add_cluster, add_output, add_sops, add_verbose
from agent.cli._common import lazy


def who(args: argparse.Namespace) -> str:
    """Who overrides a rollout, for its history, the Event and the audit log: --as, else $USER@host."""
    if args.who:
        return str(args.who)
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rollout", help="see and steer the controller's progressive rollouts (spec.rollout)",
                       description="The rollouts the controller drives, as stored in the ConfigMap "
                                   "modelops-rollouts-<target> (inventory namespace). abort, promote, pause and "
                                   "resume write a human override there; the controller picks it up on its next "
                                   "tick.")
    rollout_sub = p.add_subparsers(dest="rollout_command", required=True,
                                   metavar="{status,abort,promote,pause,resume}")
    for name, text in (("status", "the target's rollouts: version, phase, step, traffic, since, last checks"),
                       ("abort", "stop a model's rollout: no traffic to the new version until Git changes"),
                       ("promote", "skip a model's remaining steps: all traffic to the new version"),
                       ("pause", "hold a progressing rollout at its step: its traffic stays, no analysis, no "
                                 "advance or rollback until resumed"),
                       ("resume", "let a paused rollout go on at its step (the step's interval starts again)")):
        r = rollout_sub.add_parser(name, help=text, description=text + ". Exit 2 when the model has no rollout state.")
        if name == "status":
            r.add_argument("model", nargs="?", help="only this Model (metadata.name)")
            r.add_argument("path", nargs="?", help="model repo directory (default: .; a lone argument with / or . "
                                                   "is the PATH)")
            add_output(r, "text (default): a table; json or yaml: {target, rollouts}")
        else:
            r.add_argument("model", help="the Model's metadata.name")
            r.add_argument("path", nargs="?", help="model repo directory (default: .)")
            r.add_argument("--as", dest="who", metavar="NAME", help="who overrides (default $USER@host)")
            r.add_argument("--audit-log", help="append a rollout-override record to this hash-chained audit log")
            if name in ("abort", "pause"):
                r.add_argument("--reason", metavar="TEXT", help="why, kept in the rollout's history and the audit log")
        r.add_argument("-n", "--namespace", metavar="NS", help="the Model's namespace (needed when the name is in several)")
        r.add_argument("--revision", help="read the repo at this git commit/branch/tag instead of the working tree")
        add_sops(r)
        add_verbose(r)
        add_cluster(r)
        r.set_defaults(handler=lazy("_rollout_cmd", "cmd_rollout"), reason=None)
