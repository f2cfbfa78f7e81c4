"""Renderers of a Plan: text (optionally colored), JSON (documented in docs/diff-json.md) and
Markdown for a pull-request comment. Formatting only; all decisions live in the Plan."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from agent.output._data import document
from agent.output._yamldiff import LIVE_SIDES, unified
from agent.plan import ModelChange, Plan

_SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
_COLOR = {"create": "32", "update": "33", "delete": "31", "unchanged": "2"}


# --- making untrusted strings safe -------------------------------------------------------
# Names, values and revisions come from the repo, the cluster (field managers) and git refs:
# none of them may reach a terminal as control sequences, or a PR comment as Markdown/HTML.

_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(value: str) -> str:
    """value with every control, format (bidi override, zero-width), separator, surrogate or
    unassigned character written as a Python-style escape: one line, nothing a terminal acts on."""
    return "".join(_escape_char(c) if unicodedata.category(c) in _INVISIBLE else c for c in value)


# Characters that make Markdown or HTML structure in a table cell or an HTML block: table
# pipes, code spans, tags, entities, links/images, emphasis, backslash escapes.
_MD_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: f"&#{ord(c)};" for c in "|`[]*_~\\"}})
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")


def md_text(value: str) -> str:
    """value as inert inline text for a Markdown table cell or HTML: one line, no markup."""
    return visible(value).translate(_MD_ENTITIES)


def md_code(value: str) -> str:
    """value in code font: a plain name as a `code span`, anything else escaped in <code>."""
    if _PLAIN.fullmatch(value):
        return f"`{value}`"
    return f"<code>{md_text(value)}</code>"


def _fence(lines: list[str]) -> str:
    """A backtick fence longer than any backtick run in lines, so none of them can close it."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def revision_label(info: dict[str, str]) -> str:
    """One side of an offline diff: `main (1a2b3c4d5e6f)` for a named revision, the short
    commit alone when it was named by (a prefix of) its SHA, `working-tree` for the files on disk."""
    short = info.get("short") or "working-tree"
    ref = info.get("ref") or ""
    if ref and not info.get("commit", "").startswith(ref):
        return f"{ref} ({short})"
    return short


def diff_sides(plan: Plan) -> tuple[str, str]:
    """What the two sides of each object's diff are called: the revisions for an offline plan
    (its base is a commit), `live` and `desired` for a plan against a cluster."""
    if plan.base.get("commit"):
        return revision_label(plan.base), revision_label(plan.revision)
    return LIVE_SIDES


def _counts_line(plan: Plan) -> str:
    c = plan.counts()
    return f"{c['create']} to create, {c['update']} to update, {c['delete']} to delete, {c['unchanged']} unchanged"


def text(plan: Plan, *, color: bool = False, show_diff: bool = True) -> str:
    """Every line passes through `visible`, so no name or value reaches the terminal raw."""
    out: list[str] = []

    def add(line: str, code: str | None = None) -> None:
        line = visible(line)
        out.append(_paint(line, code, color) if code else line)

    if plan.base or plan.revision:
        base = plan.base.get("short", "")
        rev = plan.revision.get("short", "")
        add(f"Comparing {base or 'live cluster'} -> {rev or 'working tree'}")
        add("")
    changed_models = [m for m in plan.models if m.status != "unchanged" or m.changes]
    add("Models", "1")
    if not changed_models:
        add("  no model changes")
    for m in changed_models:
        add(f"  {m.key}: " + "; ".join(m.changes))
    for key, note in sorted(plan.rollouts.items()):  # live traffic that is the rollout's, not drift
        add(f"  {key}: {note.message}", "36")
    for key, lines in sorted(plan.notes.items()):
        for line in lines:
            add(f"  {key}: note: {line}", "33")
    add("")
    out.append(_paint("Objects", "1", color) + f" ({_counts_line(plan)})")
    for o in plan.changed:
        line = f"  {_SYMBOL[o.action]} {o.action:<7} {o.ref}"
        if o.changed_fields and o.action == "update":
            shown = o.changed_fields[:6]
            more = f" (+{len(o.changed_fields) - 6} more)" if len(o.changed_fields) > 6 else ""
            line += f"  [{', '.join(shown)}{more}]"
        if o.drift:
            line += "  drift: " + ", ".join(f"{f} by {m}" for f, m in sorted(o.drift.items()))
        if o.owner_conflict:
            line += f"  CONFLICT: owned by target {o.owner_conflict!r} (apply refuses; --adopt takes it)"
        add(line, "31;1" if o.owner_conflict else _COLOR[o.action])
    if show_diff:
        sides = diff_sides(plan)
        for o in plan.changed:
            diff = unified(o.before, o.after, visible(o.ref), sides)
            if not diff:
                continue
            add("")
            for d in diff:
                if d.startswith(("+++", "---")):
                    add(d, "1")
                elif d.startswith("@@"):
                    add(d, "36")
                elif d.startswith("+"):
                    add(d, "32")
                elif d.startswith("-"):
                    add(d, "31")
                else:
                    add(d)
    return "\n".join(out) + "\n"


def as_dict(plan: Plan) -> dict[str, Any]:
    sides = diff_sides(plan)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "Plan",
        "base": plan.base,
        "revision": plan.revision,
        "changed": plan.has_changes,
        "summary": plan.counts(),
        "models": [_model_dict(m, plan) for m in plan.models],
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
                "ownerConflict": o.owner_conflict or None,
                "diff": "\n".join(unified(o.before, o.after, o.ref, sides)) if o.action != "unchanged" else "",
            }
            for o in plan.objects
        ],
    }


def _model_dict(m: ModelChange, plan: Plan) -> dict[str, Any]:
    """`rollout` only where the model has a running rollout, `notes` only where there are some:
    plans without them keep their shape."""
    out: dict[str, Any] = {"namespace": m.namespace, "name": m.name, "status": m.status, "changes": m.changes}
    note = plan.rollouts.get(m.key)
    if note is not None:
        out["rollout"] = note.to_json()
    if plan.notes.get(m.key):
        out["notes"] = list(plan.notes[m.key])
    return out


def as_json(plan: Plan) -> str:
    return document(as_dict(plan), "json")


def markdown(plan: Plan, *, max_diff_lines: int = 400) -> str:
    """The PR comment. Every name, value and revision from the repo, the cluster or git is
    escaped (`md_text`, `md_code`) and each diff sits in a fence no line of it can close, so a
    PR cannot forge text, tables, HTML or images in the bot's comment."""
    out: list[str] = []
    title = "### Model changes"
    if plan.base or plan.revision:
        title += f" {md_code(plan.base.get('short', 'live'))} → {md_code(plan.revision.get('short', 'working tree'))}"
    out.append(title)
    out.append("")
    changed_models = [m for m in plan.models if m.status != "unchanged" or m.changes]
    if changed_models:
        out.append("| model | status | changes |")
        out.append("|---|---|---|")
        for m in changed_models:
            changes = "<br>".join(md_text(c) for c in m.changes)
            out.append(f"| {md_code(m.key)} | {md_text(m.status)} | {changes} |")
    else:
        out.append("No model changes.")
    if plan.rollouts:
        out.append("")
    for key, note in sorted(plan.rollouts.items()):
        out.append(f"- **rollout** {md_code(key)}: {md_text(note.message)}")
    if plan.notes and not plan.rollouts:
        out.append("")
    for key, lines in sorted(plan.notes.items()):
        out.extend(f"- **note** {md_code(key)}: {md_text(line)}" for line in lines)
    out.append("")
    out.append(f"**Objects:** {_counts_line(plan)}")
    out.append("")
    for o in plan.conflicts:
        out.append(f"> **Conflict:** <code>{md_text(o.ref)}</code> belongs to target {md_code(o.owner_conflict)}: "
                   "apply refuses this commit unless `--adopt` is given.")
        out.append("")
    budget = max_diff_lines
    sides = diff_sides(plan)
    for o in plan.changed:
        diff = [visible(d) for d in unified(o.before, o.after, visible(o.ref), sides)]
        body: list[str]
        if budget <= 0:
            body = ["# diff omitted (comment size limit); run `agent diff` locally"]
        else:
            body = diff[:budget]
            if len(diff) > budget:
                body.append(f"# ... {len(diff) - budget} more lines")
            budget -= len(diff)
        fence = _fence(body)
        out.append(f"<details><summary>{md_text(o.action)} <code>{md_text(o.ref)}</code></summary>")
        out.append("")
        out.append(f"{fence}diff")
        out.extend(body)
        out.append(fence)
        out.append("</details>")
    return "\n".join(out) + "\n"


def markdown_grouped(sections: Sequence[tuple[str, Plan | str]], *, max_diff_lines: int = 400) -> str:
    """The PR comment of a repo with environments: one section per environment (its own plan,
    "No changes." when it has none, or why it could not be planned), under one title; the
    diff budget shared between them."""
    first = next((p for _, p in sections if isinstance(p, Plan)), None)
    title = "### Model changes"
    if first is not None and (first.base or first.revision):
        title += f" {md_code(first.base.get('short', 'live'))} → {md_code(first.revision.get('short', 'working tree'))}"
    out = [title, ""]
    share = max(20, max_diff_lines // max(1, len(sections)))
    for name, plan in sections:
        out.append(f"#### {'Cluster' if '/' in name else 'Environment'} {md_code(name)}")  # environment/cluster
        out.append("")
        if isinstance(plan, str):
            out.extend([f"Not planned: {md_text(plan)}", ""])
            continue
        if not plan.has_changes and not plan.conflicts:
            out.extend(["No changes.", ""])
            continue
        body = markdown(plan, max_diff_lines=share).splitlines()[2:]  # its own title dropped
        out.extend([*body, ""])
    return "\n".join(out)
