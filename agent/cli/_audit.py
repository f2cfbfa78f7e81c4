"""`agent audit verify`: the flags. The command runs from agent.cli._audit_cmd, imported when it
runs (it loads structlog and, for the anchor, the kubernetes client)."""

from __future__ import annotations

import argparse

from agent.cli._args import add_cluster, add_output
from agent.cli._common import lazy


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    v = audit_sub.add_parser("verify", help="verify the hash chain (exit 0 intact, 1 broken)")
    v.add_argument("file", help="the audit log (JSON Lines) to verify")
    v.add_argument("--anchor", help="SEQ:HASH of the last committed record (default: from the cluster)")
    v.add_argument("--target", help="read the anchor from this target's inventory in the cluster")
    add_output(v, "text (default): ok or FAILED and why; json or yaml: {file, ok, message, records, firstBadLine, "
                  "anchor}")
    add_cluster(v)
    v.set_defaults(handler=lazy("_audit_cmd", "cmd_audit"))
