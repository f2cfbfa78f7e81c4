"""`agent history [MODEL] [PATH]`: a model's deployments from the audit log (agent.history).
Imported only when the command runs: it loads the audit log's reader."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import history
from agent.cli._common import EXIT_OK, echo, find_repo_root, holds_repo_config, rollout_args, visible, write_document
from agent.errors import AgentError


def cmd_history(args: argparse.Namespace) -> int:
    """`agent history [MODEL] [PATH]`: a model's deployments from the audit log, newest first."""
    rollout_args(args)
    if not args.audit_log:
        raise AgentError("agent history reads the audit log: --audit-log FILE (or AGENT_AUDIT_LOG), the file "
                         "agent apply and agent run --audit-log write; the controller of deploy/ keeps it in its "
                         "pod: kubectl -n modelops-system exec deploy/modelops-agent -- cat "
                         "/var/log/modelops/audit.jsonl | agent history MODEL --audit-log -")
    path = Path(args.path)
    repo = find_repo_root(args.path) or (path if holds_repo_config(path) else None)
    target = history.target_of(repo) if repo is not None else None
    entries, notes = history.read(args.audit_log, name=args.model, namespace=args.namespace, target=target)
    for note in notes:
        print(visible(f"note: {note}"), file=sys.stderr)
    if args.model and not entries:
        where = f" of target {target}" if target else ""
        raise AgentError(f"no deployment of a model {args.model}{' in ' + args.namespace if args.namespace else ''}"
                         f"{where} in the audit log {args.audit_log}")
    if args.output in ("json", "yaml"):
        write_document({"auditLog": args.audit_log, "target": target, "deployments": history.public(entries)},
                       args.output)
    else:
        for line in history.table(entries):
            echo(line)
    return EXIT_OK
