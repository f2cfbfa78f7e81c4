"""How the live commands print for a person: a plan (text, markdown or a document), the status
table and a rollout's line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from agent import output
from agent.cli._common import dur, echo, plain, visible, write_document
from agent.plan import Plan


def use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def print_plan(plan: Plan, args: argparse.Namespace) -> None:
    if args.output in ("json", "yaml"):
        write_document(output.as_dict(plan), args.output)
    elif args.output == "markdown":
        sys.stdout.write(output.markdown(plan))
    else:
        sys.stdout.write(output.text(plan, color=use_color(args.color), show_diff=not getattr(args, "quiet", False)))


def warn_conflicts(plan: Plan) -> None:
    for c in plan.conflicts:
        print(visible(f"warning: {c.ref} carries the ownership label of target {c.owner_conflict!r}: apply refuses "
                      "to take it over (exit 2) unless --adopt is given"), file=sys.stderr)


def print_status(status: dict[str, Any]) -> None:
    models = status.get("models")
    assert isinstance(models, list)
    print(f"{'MODEL':<36} {'VERSION':<10} {'CANARY':<12} {'SYNCED':<7} {'HEALTH':<12} LAST APPLY")
    for m in models:
        canary = "-" if not m["canary"] else str(m["canary"]["version"]) if m["canary"]["traffic"] is None \
            else f"{m['canary']['version']}@{m['canary']['traffic']}%"  # the live view may not know the traffic
        last = m["lastApply"]
        echo(f"{m['namespace'] + '/' + m['name']:<36} {m['version']:<10} {canary:<12} "
             f"{plain(m['synced']):<7} {m['health']:<12} "
             f"{last['result']} {last['commit'][:12]} {m['message']}")
        if m.get("rollout"):
            echo(f"  rollout: {rollout_line(m['rollout'])}")
            for note in m["rollout"].get("notes") or []:
                echo(f"  note: {note}")
    invalid = status.get("invalidCommit")
    if isinstance(invalid, dict):
        errors = invalid.get("errors") or [""]
        echo(f"invalid commit {str(invalid.get('commit', ''))[:12]} at {invalid.get('time', '')} was not "
             f"applied ({len(errors)} problem(s), first: {errors[0]}); the last good commit stays in force")
    mark = status.get("lastSync")
    if isinstance(mark, dict):  # who last found the cluster as a commit says, and when
        by = "the controller" if mark.get("by") == "controller" else mark.get("by", "")
        following = f" following {mark['source']}" if mark.get("source") else ""
        echo(f"last sync: commit {str(mark.get('commit') or 'working tree')[:12]}, "
             f"{dur(mark['ageSeconds'])} ago ({mark.get('time', '')}) by {by}{following}")


def checks_text(checks: list[dict[str, Any]]) -> str:
    """The last analysis as `name=value verdict`, so a human sees why a step waits or failed."""
    def one(c: dict[str, Any]) -> str:
        value = c.get("value")
        shown = "no data" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        verdict = {True: "ok", False: "FAILED", None: "pending"}[c.get("ok")]
        return f"{c['name']}={shown} {verdict}"

    return ", ".join(one(c) for c in checks) or "-"


def rollout_line(r: dict[str, Any]) -> str:
    if r["step"] is None:  # an invalid state: no step, only why and the traffic held
        return str(r["message"])
    step = f"step {r['step']}/{r['steps']}" if r.get("steps") else f"step {r['step']}"
    return (f"{r['phase']} {step}, {r['traffic']}% to {r['version']}; checks: {checks_text(r.get('checks') or [])}; "
            f"{r['message']}")
