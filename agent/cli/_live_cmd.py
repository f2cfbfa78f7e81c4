"""The live commands: diff against the cluster, apply, status. Each parses its flags, hands the
work to the engine (agent.engine: load_desired, then an Engine on the cluster with the flags as
EngineOptions) and formats what comes back.
Imported only when one of them runs: it loads the kubernetes client."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import engine, output
from agent.apply import PruneRefused
from agent.cli import _fleet_cmd as fleet
from agent.cli._common import (
    EXIT_ERROR,
    EXIT_OK,
    echo,
    plain,
    repo_path,
    selection,
    signers,
    visible,
    warn,
    write_document,
)
from agent.cli._connect import connect, connect_named
from agent.cli._envs import needs_scope, scopes
from agent.cli._guard import error_lines
from agent.cli._offline import show_diff
from agent.cli._show import print_plan, print_status
from agent.cli._status_watch import Taken, take, watch
from agent.cluster import Cluster
from agent.engine import Desired, Engine, EngineOptions, OwnershipConflict, SyncResult
from agent.errors import AgentError, ValidationFailed
from agent.plan import Selection


def cmd_diff(args: argparse.Namespace) -> int:
    """`agent diff` without --base: the repo against the live cluster (each cluster of an
    environment: agent.cli._fleet_cmd)."""
    desired = engine.load_desired(repo_path(args), args.revision, signers=signers(args), resolve=False)
    found = needs_scope(desired.spec, args, "diff")
    if found is not None:
        return fleet.diff(args, desired, found)
    desired = engine.resolve_registries(desired, repo_path(args))
    with connect(args) as cluster:
        plan = Engine(cluster, EngineOptions(inventory_namespace=args.inventory_namespace, warn=warn)).plan(desired).plan
    return show_diff(plan, args)


def cmd_apply(args: argparse.Namespace) -> int:
    # an invalid commit (or, with --verify-signatures, one not signed by an allowed key) raises: nothing applied
    path = repo_path(args)
    desired = engine.load_desired(path, args.revision, signers=signers(args), resolve=False)
    found = needs_scope(desired.spec, args, "apply")
    if found is not None:
        return fleet.apply(args, desired, found)
    desired = engine.resolve_registries(desired, path)
    options = apply_options(args, desired)
    outcome, status = _apply(args, desired, options, lambda: connect(args))
    if args.output != "text":
        write_document(applied_document(outcome, status), args.output)
        return applied_code(outcome, status, args)
    print_applied(outcome, status, args)
    return applied_code(outcome, status, args)


def apply_options(args: argparse.Namespace, desired: Desired) -> EngineOptions:
    """The flags of apply as EngineOptions; a filter (--model, -n) checked against `desired`."""
    selected = selection(args)
    if selected.active:
        if args.prune:
            raise AgentError(f"--prune with {selected.describe()} is refused: pruning needs every object of the "
                             "repo to know what is no longer in it; apply without the filter to prune")
        selected.check_models((m.namespace, m.name) for m in desired.spec.models)
        if not any(selected.object(o) for o in desired.objects):
            raise AgentError(f"no object matches {selected.describe()}")
    return EngineOptions(
        prune=False if selected.active else (True if args.prune else None),
        dry_run=args.dry_run,
        allow_mass_prune=args.allow_mass_prune,
        force_conflicts=args.conflicts == "force",
        concurrency=args.concurrency,
        inventory_namespace=args.inventory_namespace,
        events=not args.no_events,
        audit_log=Path(args.audit_log) if args.audit_log else None,
        adopt=args.adopt,
        lock_timeout=args.lock_timeout,
        select=selected,
        warn=warn,
    )


def applied_document(outcome: SyncResult, status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "plan": output.as_dict(outcome.plan),
        "results": [
            {"ref": r.change.ref, "action": r.change.action, "outcome": r.outcome, "message": r.message}
            for r in outcome.report.results
        ],
        "requests": outcome.requests,
        "status": status,
    }


def print_applied(outcome: SyncResult, status: dict[str, Any] | None, args: argparse.Namespace) -> None:
    """An apply's text: the diff, a line per object (failures only with -q), the totals."""
    print_plan(outcome.plan, argparse.Namespace(output="text", color=args.color, quiet=args.quiet))
    verb = "would apply" if args.dry_run else "applied"
    for r in outcome.report.results:
        if args.quiet and r not in outcome.report.failed:  # -q: per-object lines of failures only
            continue
        line = f"{r.outcome:<9} {r.change.action:<7} {r.change.ref}"
        echo(line + (f": {r.message}" if r.message else ""))
    if args.dry_run:
        done = len(outcome.plan.changed)
    else:
        done = sum(1 for r in outcome.report.results if r.outcome in ("applied", "deleted"))
    print(f"{verb} {done} object change(s); {len(outcome.report.failed)} failed; "
          f"requests: {plain(dict(sorted(outcome.requests.items())))}")
    if outcome.inventory_error:
        print(visible(f"error: the inventory was not saved: {outcome.inventory_error}"), file=sys.stderr)
    if status is not None:
        print_status(status)


def applied_code(outcome: SyncResult, status: dict[str, Any] | None, args: argparse.Namespace) -> int:
    """0, or 2 when something failed or --wait did not see every model settle Healthy (said on stderr)."""
    if not outcome.ok:
        return EXIT_ERROR
    if status is not None and status.get("timedOut"):
        pending = status.get("unsettled") or []
        assert isinstance(pending, list)
        health = {f"{m['namespace']}/{m['name']}": m["health"] for m in status["models"]}
        names = ", ".join(f"{name} ({health.get(name, '?')})" for name in pending)
        hint = "" if args.allow_unknown else "; --allow-unknown accepts Unknown (no controller reports on it)"
        print(visible(f"error: timed out after {args.timeout:g}s waiting for {len(pending)} model(s) to settle: "
                      f"{names}{hint}"), file=sys.stderr)
        return EXIT_ERROR
    if status is not None and status.get("degraded"):
        print(visible(f"error: degraded: {', '.join(status['degraded'])}"), file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _apply(args: argparse.Namespace, desired: Desired, options: EngineOptions, connector: Callable[[], Cluster]
           ) -> tuple[SyncResult, dict[str, Any] | None]:
    """The apply itself (the engine plans with the running rollouts' traffic, holds new canaries
    back and writes the selected objects), then (--wait) the models waited for; the result and
    the status waited for (None without --wait)."""
    progress = _progress_printer() if sys.stderr.isatty() else None
    with connector() as cluster:
        try:
            outcome = Engine(cluster, options).apply(desired, progress)
        except (OwnershipConflict, PruneRefused) as refused:
            if refused.plan is not None and args.output == "text":
                print_plan(refused.plan, argparse.Namespace(output="text", color=args.color))
            raise
        if progress is not None:
            print(file=sys.stderr)
        status = None
        if args.wait:
            status = _wait(args, desired, cluster, options.select)
    return outcome, status


def _wait(args: argparse.Namespace, desired: Desired, cluster: Cluster, selected: Selection) -> dict[str, Any]:
    """--wait: the selected models' status once they settled (or at the timeout)."""
    if selected.active:  # the selection's objects are what was applied
        desired = dataclasses.replace(desired, objects=[o for o in desired.objects if selected.object(o)])
    waiting = _wait_printer() if sys.stderr.isatty() else None
    status = engine.wait_healthy(desired, cluster, args.timeout, inventory_namespace=args.inventory_namespace,
                                 allow_unknown=args.allow_unknown, progress=waiting,
                                 select=lambda m: selected.model(m["namespace"], m["name"]))
    if waiting is not None:
        print(file=sys.stderr)
    return status


def _progress_printer() -> Callable[[object], None]:
    count = [0]

    def show(result: object) -> None:
        count[0] += 1
        ref = getattr(getattr(result, "change", None), "ref", "")
        sys.stderr.write(f"\r\033[K[{count[0]}] {getattr(result, 'outcome', '')} {ref}")
        sys.stderr.flush()

    return show


def _wait_printer() -> Callable[[dict[str, Any], list[str]], None]:
    started = time.monotonic()

    def show(status: dict[str, Any], pending: list[str]) -> None:
        total = len(status["models"])
        first = f": {pending[0]}{' ...' if len(pending) > 1 else ''}" if pending else ""
        line = f"waiting {time.monotonic() - started:.0f}s: {total - len(pending)}/{total} models settled{first}"
        sys.stderr.write("\r\033[K" + visible(line))
        sys.stderr.flush()

    return show


def cmd_status(args: argparse.Namespace) -> int:
    """A status (exit 0 all good, 1 not, 2 an invalid checkout: the cluster's view is shown
    anyway), or with --watch one per change until Ctrl-C (exit 0)."""
    path = repo_path(args)
    if args.env is None and args.cluster is None:
        try:
            whole = engine.load_desired(path, args.revision, resolve=False)
        except ValidationFailed:
            whole = None  # shown below: the cluster's live state, then the problems
        if whole is None or not whole.spec.environments:
            return _status(args, path, selection(args), lambda: connect(args), None)
        if args.watch:
            raise AgentError("--watch needs --cluster NAME: the matrix of every environment is taken once")
        return fleet.status(args, whole, scopes(whole.spec, args) or [])
    whole = engine.load_desired(path, args.revision, resolve=False)
    found = scopes(whole.spec, args) or []
    if args.watch:
        clusters = [(s.environment, c) for s in found for c in s.clusters]
        if len(clusters) != 1:
            raise AgentError(f"--watch needs one cluster: environment {found[0].environment} has "
                             f"{len(clusters)} (--cluster NAME)")
        env, name = clusters[0]
        return _status(args, path, selection(args), lambda: connect_named(args, name), env)
    return fleet.status(args, whole, found)


def _status(args: argparse.Namespace, path: str, selected: Selection, connector: Callable[[], Cluster],
            environment: str | None) -> int:
    """The status as the cluster has it, taken once or (--watch) again on every change."""
    with connector() as cluster:
        eng = Engine(cluster, EngineOptions(inventory_namespace=args.inventory_namespace))

        def once() -> Taken:
            taken = take(lambda: engine.load_desired(path, args.revision, environment=environment), eng,
                         allow_unknown=args.allow_unknown, warn=warn,
                         keep=(lambda m: selected.model(m["namespace"], m["name"])) if selected.active else None)
            if selected.active and not taken.document["models"]:
                raise AgentError(f"no model matches {selected.describe()} in the repo")
            return taken

        if args.watch:
            return watch(once, lambda taken: _show_status(taken, args, stream=True), warn=warn)
        taken = once()
    _show_status(taken, args)
    return taken.code


def _show_status(taken: Taken, args: argparse.Namespace, stream: bool = False) -> None:
    """One status as asked (-o); `stream` (--watch): json one line per document, yaml `---` between."""
    status = taken.document
    if args.output == "json" and stream:
        sys.stdout.write(json.dumps(status, separators=(",", ":")) + "\n")
    elif args.output in ("json", "yaml"):
        if stream and args.output == "yaml":
            sys.stdout.write("---\n")
        write_document(status, args.output)
    else:
        if stream:
            print(time.strftime("# %Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        print_status(status)
    if taken.problems is not None:
        print(visible(f"error: {len(taken.problems.errors)} problem(s) in the local checkout; shown is the live "
                      f"state of target {status['target']} from the cluster (synced with Git: unknown):"),
              file=sys.stderr)
        for line in error_lines(taken.problems.errors):
            print(visible(line), file=sys.stderr)
        if not status["models"]:
            print(visible(f"note: the cluster has no model of target {status['target']} (nothing applied yet, "
                          "or its inventory is in another --inventory-namespace)"), file=sys.stderr)
