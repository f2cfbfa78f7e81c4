"""The text of a promotion's pull request: its body (the Markdown plan and the commit's
trailers, cut to what a forge accepts) and the plan's sides named by the PR's branches. Pure."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from agent.output import markdown
from agent.plan import Plan
from agent.promotion._change import trailers

PR_BODY_LIMIT = 60_000  # GitHub refuses comments and PR bodies over 65,536 characters


@dataclass
class PullOutcome:
    number: int
    url: str
    created: bool
    title: str
    body: str


def pull_body(plan: Plan, message: str) -> str:
    """The PR description: the commit message's body when it has one (what is between its
    summary line and its trailers: a promotion's evidence), the Markdown plan (as `agent diff -o
    markdown` prints it), then the commit's trailers."""
    found = trailers(message)
    paragraphs = message.strip().split("\n\n")
    body = paragraphs[1:-1] if found else paragraphs[1:]
    lines = [*(p.rstrip("\n") + "\n" for p in body), markdown(plan).rstrip("\n"), ""]
    if found:
        lines += ["```text", *(f"{k}: {v}" for k, v in found.items()), "```", ""]
    lines.append("<sub>Opened by `agent promote --open-pr`.</sub>")
    return truncate("\n".join(lines) + "\n")


def relabel(plan: Plan, base: str, head: str) -> Plan:
    """The plan with its two sides named by the PR's branches (in its title and each diff)."""
    def side(info: dict[str, str], name: str) -> dict[str, str]:
        kept = {k: v for k, v in info.items() if k != "ref"}
        return {**kept, "short": name, "commit": kept.get("commit") or name}

    return dataclasses.replace(plan, base=side(plan.base, base), revision=side(plan.revision, head))


def truncate(body: str, limit: int = PR_BODY_LIMIT) -> str:
    """`body` cut to at most `limit` characters at a line end, an open code fence and open
    <details> closed, with a note saying so."""
    if len(body) <= limit:
        return body
    note = (f"\n\n**Truncated:** this text has {len(body):,} characters; only the first part is shown (GitHub "
            "allows 65,536). `agent diff` prints all of it.\n")
    room = limit - len(note) - 200
    cut = body[:room]
    cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else cut
    fence: str | None = None
    for line in cut.splitlines():
        stripped = line.strip()
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if not match:
            continue
        if fence is None:
            fence = match.group(1)
        elif stripped.startswith(fence) and not stripped[len(fence):].strip(fence[0]).strip():
            fence = None
    closing = ""
    if fence is not None:
        closing += ("" if cut.endswith("\n") else "\n") + fence + "\n"
    open_details = cut.count("<details>") - cut.count("</details>")
    closing += "</details>\n" * max(open_details, 0)
    return cut + closing + note
