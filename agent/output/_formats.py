"""Renderers of a Plan: text (optionally colored), JSON (documented in docs/diff-json.md) and
Markdown for a pull-request comment. Formatting only; all decisions live in the Plan."""

from __future__ import annotations

import json
from typing import Any

from agent.output._yamldiff import unified
from agent.plan import Plan

_SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
_COLOR = {"create": "32", "update": "33", "delete": "31", "unchanged": "2"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def _counts_line(plan: Plan) -> str:
    c = plan.counts()
    return f"{c['create']} to create, {c['update']} to update, {c['delete']} to delete, {c['unchanged']} unchanged"



def text(plan: Plan, *, color: bool = False, show_diff: bool = True) -> str:
    out: list[str] = []
    if plan.base or plan.revision:
        base = plan.base.get("short", "")
        rev = plan.revision.get("short", "")
        out.append(f"Comparing {base or 'live cluster'} -> {rev or 'working tree'}")
        out.append("")
    changed_models = [m for m in plan.models if m.status != "unchanged" or m.changes]
    out.append(_paint("Models", "1", color))
    if not changed_models:
        out.append("  no model changes")
    for m in changed_models:
        out.append(f"  {m.key}: " + "; ".join(m.changes))
    out.append("")
    out.append(_paint("Objects", "1", color) + f" ({_counts_line(plan)})")
    for o in plan.changed:
        line = f"  {_SYMBOL[o.action]} {o.action:<7} {o.ref}"
        if o.changed_fields and o.action == "update":
            shown = o.changed_fields[:6]
            more = f" (+{len(o.changed_fields) - 6} more)" if len(o.changed_fields) > 6 else ""
            line += f"  [{', '.join(shown)}{more}]"
        if o.drift:
            line += "  drift: " + ", ".join(f"{f} by {m}" for f, m in sorted(o.drift.items()))
        out.append(_paint(line, _COLOR[o.action], color))
    if show_diff:
        for o in plan.changed:
            diff = unified(o.before, o.after, o.ref)
            if not diff:
                continue
            out.append("")
            for d in diff:
                if d.startswith(("+++", "---")):
                    out.append(_paint(d, "1", color))
                elif d.startswith("@@"):
                    out.append(_paint(d, "36", color))
                elif d.startswith("+"):
                    out.append(_paint(d, "32", color))
                elif d.startswith("-"):
                    out.append(_paint(d, "31", color))
                else:
                    out.append(d)
    return "\n".join(out) + "\n"


def as_dict(plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "Plan",
        "base": plan.base,
        "revision": plan.revision,
        "changed": plan.has_changes,
        "summary": plan.counts(),
        "models": [
            {"namespace": m.namespace, "name": m.name, "status": m.status, "changes": m.changes}
            for m in plan.models
        ],
        "objects": [
            {
                "action": o.action,
                "apiVersion": o.api_version,
                "kind": o.kind,
                "namespace": o.namespace,
                "name": o.name,
                "model": o.model,
                "changedFields": o.changed_fields,
                "drift": [{"field": f, "manager": m} for f, m in sorted(o.drift.items())],
                "diff": "\n".join(unified(o.before, o.after, o.ref)) if o.action != "unchanged" else "",
            }
            for o in plan.objects
        ],
    }


def as_json(plan: Plan) -> str:
    return json.dumps(as_dict(plan), indent=2, sort_keys=False) + "\n"


def markdown(plan: Plan, *, max_diff_lines: int = 400) -> str:
    out: list[str] = []
    title = "### Model changes"
    if plan.base or plan.revision:
        title += f" `{plan.base.get('short', 'live')}` → `{plan.revision.get('short', 'working tree')}`"
    out.append(title)
    out.append("")
    changed_models = [m for m in plan.models if m.status != "unchanged" or m.changes]
    if changed_models:
        out.append("| model | status | changes |")
        out.append("|---|---|---|")
        for m in changed_models:
            changes = "<br>".join(c.replace("|", "\\|") for c in m.changes)
            out.append(f"| `{m.key}` | {m.status} | {changes} |")
    else:
        out.append("No model changes.")
    out.append("")
    out.append(f"**Objects:** {_counts_line(plan)}")
    out.append("")
    budget = max_diff_lines
    for o in plan.changed:
        diff = unified(o.before, o.after, o.ref)
        out.append(f"<details><summary>{o.action} <code>{o.ref}</code></summary>")
        out.append("")
        out.append("```diff")
        if budget <= 0:
            out.append("# diff omitted (comment size limit); run `agent diff` locally")
        else:
            out.extend(diff[:budget])
            if len(diff) > budget:
                out.append(f"# ... {len(diff) - budget} more lines")
            budget -= len(diff)
        out.append("```")
        out.append("</details>")
    return "\n".join(out) + "\n"
