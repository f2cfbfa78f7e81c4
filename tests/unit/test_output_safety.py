"""Output is safe on its own: hostile names and values (from a PR's repo, the cluster's field
managers, git refs) cannot forge structure in the Markdown PR comment, nor reach a terminal as
control sequences. Plans are built directly, bypassing validation (defence in depth)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent import output
from agent.plan import ModelChange, ObjectReport, Plan, build_plan, change

FORGED = "x` | all good | \n\n</details>\n\n## Approved by security <img src=https://evil.example/p.png>"
FENCE_BREAKERS = "ok\n```\n## Approved by security\n````\n~~~\n<img src=x onerror=alert(1)>\n"
ESC = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\u2028line"
HOSTILE = [
    FORGED,
    FENCE_BREAKERS,
    ESC,
    "[click](https://evil.example) ![pixel](https://evil.example/p.png) **bold** _it_ \\| <!-- c -->",
    "a|b`c`d&amp;e<f>g",
]


def _cm(name: str, namespace: str, data: dict[str, str], model: str | None = None) -> dict[str, Any]:
    labels = {"modelops.dev/model": model} if model else {}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "data": data}


def hostile_plan() -> Plan:
    objects: list[ObjectReport] = []
    for i, value in enumerate(HOSTILE):
        name, ns = f"{value}-{i}", f"ns{value}"
        before = _cm(name, ns, {value: value, "n": "1"}, model=value)
        after = _cm(name, ns, {value: value + value, "n": "2", "k" + value: value}, model=value)
        updated = change("update", before, after, fields=[f"data.{value}", "data.n"],
                         drift={f"data.{value}": value, "data.n": f"kubectl{value}"})
        objects += [updated, change("create", None, _cm(f"c{name}", ns, {"v": value})),
                    change("delete", _cm(f"d{name}", ns, {"v": value}), None)]
    plan = build_plan(objects, base={"short": FORGED}, revision={"short": ESC})
    plan.models.append(ModelChange(namespace=FORGED, name=ESC, status="updated", changes=list(HOSTILE)))
    return plan


# --- a small CommonMark reader: what is inside a fenced code block, what is not -------------

_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def split_fences(md: str) -> tuple[list[str], list[list[str]]]:
    """(lines outside any fenced code block, the content of each fenced block), read as
    CommonMark does: a fence closes only on a line of at least as many of its character."""
    outside: list[str] = []
    blocks: list[list[str]] = []
    fence: str | None = None
    for line in md.split("\n"):
        if fence is None:
            m = _OPEN.match(line)
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
                blocks.append([])
            else:
                outside.append(line)
        elif re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*", line):
            fence = None
        else:
            blocks[-1].append(line)
    assert fence is None, "a fence is left open"
    return outside, blocks


def test_markdown_structure_survives_hostile_names_and_values() -> None:
    plan = hostile_plan()
    md = output.markdown(plan)
    outside, blocks = split_fences(md)
    changed = len(plan.changed)
    assert changed == 3 * len(HOSTILE)
    assert len(blocks) == changed  # one diff per object; none closed early, none forged
    text = "\n".join(outside)
    assert text.count("<details>") == text.count("</details>") == changed
    assert text.count("<summary>") == text.count("</summary>") == changed
    assert "<img" not in text and "<!--" not in text and "](" not in text
    assert not [line for line in outside if line.lstrip().startswith("#") and not line.startswith("### Model changes")]
    # the table: a header, a rule and one row per changed model, each with exactly 3 cells
    rows = [line for line in outside if line.startswith("|")]
    assert len(rows) == 2 + len([m for m in plan.models if m.status != "unchanged" or m.changes])
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 4 for row in rows), rows
    assert not any("`" in row for row in rows[2:] if row.count("`") != 2), rows  # only plain code spans
    # the summaries are one line each, in HTML, with the name escaped
    summaries = [line for line in outside if line.startswith("<details>")]
    assert all(re.fullmatch(r"<details><summary>\w+ <code>[^<>]*</code></summary>", s) for s in summaries), summaries
    assert "&lt;/details&gt;" in text and "&lt;img src=https://evil.example/p.png&gt;" in text
    # no raw control characters anywhere
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]", md)
    # the diffs are still there and readable
    assert any("## Approved by security" in line for block in blocks for line in block)


def test_markdown_renders_to_html_without_forged_elements() -> None:
    """The same check with a real CommonMark + GFM-table renderer, as GitHub would read it."""
    markdown_it = pytest.importorskip("markdown_it")
    plan = hostile_plan()
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(output.markdown(plan))
    changed = len(plan.changed)
    assert rendered.count("<details>") == rendered.count("</details>") == changed
    assert rendered.count("<pre><code") == changed
    assert "<img" not in rendered and "<a " not in rendered and "<em>" not in rendered
    assert rendered.count("<strong>") == 1  # our own "**Objects:**" only
    assert "<h2>" not in rendered and rendered.count("<h3>") == 1
    table = rendered[rendered.index("<table>"):rendered.index("</table>")]
    models = len([m for m in plan.models if m.status != "unchanged" or m.changes])
    assert models == len(HOSTILE) + 1
    assert table.count("<tr>") == 1 + models and table.count("<td>") == 3 * models


def test_markdown_fence_is_longer_than_any_backtick_run_in_the_diff() -> None:
    plan = build_plan([change("create", None, _cm("cfg", "ns", {"run": "`" * 7 + "\n" + "`" * 3}))])
    md = output.markdown(plan)
    assert "\n````````diff\n" in md  # 8 backticks: one more than the longest run
    _, blocks = split_fences(md)
    assert len(blocks) == 1


def test_plain_names_keep_the_plain_layout() -> None:
    plan = build_plan([change("create", None, _cm("cfg", "fraud", {"a": "1"}, model="scorer"))],
                      base={"short": "0123abcd"}, revision={"short": "feature/x"})
    md = output.markdown(plan)
    assert md.startswith("### Model changes `0123abcd` → `feature/x`\n")
    assert "| `fraud/scorer` | updated | objects 1 created |" in md
    assert "<details><summary>create <code>ConfigMap/fraud/cfg</code></summary>\n\n```diff\n" in md


@pytest.mark.parametrize("color", [False, True])
def test_text_output_shows_control_characters_escaped(color: bool) -> None:
    plan = hostile_plan()
    out = output.text(plan, color=color)
    # the only escape sequences are our own colors
    without_colors = re.sub(r"\x1b\[(?:\d+(?:;\d+)*)?m", "", out) if color else out
    assert "\x1b" not in without_colors
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]", without_colors)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil\\u2028line" in without_colors
    # a name cannot start a line of its own: every line begins as the formatter writes them
    for line in without_colors.splitlines():
        assert line == "" or re.match(r"(Comparing |Models|Objects|  |\+|-|@@| )", line), line


def test_json_output_escapes_control_characters() -> None:
    out = output.as_json(hostile_plan())
    assert not re.search(r"[\x00-\x1f\x7f]", out.replace("\n", ""))
