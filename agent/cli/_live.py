"""The live group's flags: apply, status and history (the live diff is `diff` of the offline
group without --base), and history, which reads the audit log only. apply and status run from
agent.cli._live_cmd, imported when one of them runs (it loads the kubernetes client), history
from agent.cli._history_cmd (it loads the audit log's reader)."""

from __future__ import annotations

import argparse

from agent.cli._args import (
    add_cluster,
    add_color,
    add_environment,
    add_filter,
    add_output,
    add_source,
    add_verify,
    env,
)
from agent.cli._common import lazy


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`apply` and `status`."""
    p = sub.add_parser("apply", help="make the cluster match the repo (server-side apply)")
    add_source(p)
    add_filter(p, "apply (no --prune with a filter)")
    add_cluster(p)
    add_environment(p, "apply to")
    p.add_argument("--prune", action="store_true", help="delete managed objects no longer in the repo")
    p.add_argument("--allow-mass-prune", action="store_true", help="override the prune budget")
    p.add_argument("--dry-run", action="store_true", help="plan and audit, change nothing")
    p.add_argument("--audit-log", help="append hash-chained audit records to this file")
    p.add_argument("--conflicts", choices=["force", "skip"], default="force",
                   help="fields owned by another manager: take them (force, Git wins) or skip the object")
    p.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="objects applied at once within a phase (default 8)")
    p.add_argument("--adopt", action="store_true",
                   help="take over objects that carry another target's ownership label (refused by default)")
    p.add_argument("--lock-timeout", type=float, default=0.0, metavar="S",
                   help="seconds to wait for the target's Lease when another apply or the controller holds it "
                        "(default 0: fail at once, naming the holder)")
    p.add_argument("--no-events", action="store_true", help="do not emit Kubernetes Events")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no diff and no line per applied object: the per-model summary, failures and the totals")
    p.add_argument("--wait", action="store_true",
                   help="wait until every model has settled: Healthy or Degraded (exit 2 when Degraded, or "
                        "on timeout naming the models still Progressing or Unknown)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to --wait (default 300)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="with --wait: Unknown health counts as settled (a cluster without the KServe controller "
                        "never reports on InferenceServices)")
    add_output(p, "text (default): the diff, one line per object and a summary; json or yaml: plan, results, "
                  "request counts and status in one document")
    add_color(p)
    add_verify(p)
    p.set_defaults(handler=lazy("_live_cmd", "cmd_apply"))

    p = sub.add_parser("status", help="per model: synced, health, last apply (exit 0 all good, 1 not)",
                       description="Per model: synced, health, last apply. Exit 0 when every model is synced "
                                   "and Healthy, 1 when some model is not synced, Progressing, Degraded or Unknown "
                                   "(Unknown: no controller reports on it; accepted with --allow-unknown), "
                                   "or the controller refused a commit (a rollout aborted or rolled back is "
                                   "Degraded); 2 on error, or when the local checkout does not validate (the "
                                   "cluster's live state is shown anyway, then the problems). --watch: again on "
                                   "every change until Ctrl-C (exit 0).")
    add_source(p)
    add_filter(p, "show")
    add_cluster(p)
    add_environment(p, "show")
    add_output(p, "text (default): a table; json or yaml: the full status document")
    p.add_argument("--allow-unknown", action="store_true",
                   help="exit 0 even when a model's health is Unknown (no controller reports on it, e.g. no KServe)")
    p.add_argument("-w", "--watch", action="store_true",
                   help="print the status again whenever it changes (json: one document per line) until Ctrl-C "
                        "(exit 0)")
    p.set_defaults(handler=lazy("_live_cmd", "cmd_status"))


def add_history_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`history` (listed after `rollout`)."""
    p = sub.add_parser("history", help="a model's deployments from the audit log, newest first",
                       description="The deployments of MODEL (every model without one) read from the audit log: "
                                   "when, commit, author, pull request, versions and traffic, the result, and what "
                                   "its rollout did. PATH (default .): when it is a model repo, only its target's "
                                   "records. Exit 0; 2 when the log cannot be read or has no deployment of MODEL.")
    p.add_argument("model", nargs="?", help="the Model's name (default: every model)")
    p.add_argument("path", nargs="?", help="model repo directory (default: .)")
    p.add_argument("-n", "--namespace", metavar="NS", help="only the Model of this namespace")
    p.add_argument("--audit-log", default=env("AUDIT_LOG"), metavar="FILE",
                   help="the audit log to read (default $AGENT_AUDIT_LOG; - reads standard input)")
    add_output(p, "text (default): a table, newest first; json or yaml: every field")
    p.set_defaults(handler=lazy("_history_cmd", "cmd_history"))
