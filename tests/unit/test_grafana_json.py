"""deploy/grafana/modelops-agent.json is a dashboard Grafana imports as it is: unique panel ids,
panels that do not overlap, every panel on the `datasource` variable (no datasource UID of one
Grafana written in), every query a PromQL expression once Grafana's variables are substituted,
over metric names the agent really exports (or the models' default series), every legend on
labels its query keeps, and every metric the agent exports on some panel.

The helpers here (`dashboard`, `queries`, `variable_queries`, `substitute`, `metric_names`) are
shared with tests/integration/test_grafana_dashboard.py, which asks a real Prometheus scraping a
real `agent run` the same queries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.controller import FleetMetrics, Metrics
from agent.spec import MetricNames

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "modelops-agent.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PREFIX = "modelops_agent_"

# Grafana's built-in interval variables, and what a test substitutes for them by default.
BUILTINS = ("$__rate_interval", "$__interval", "$__range")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_SELECTED = re.compile(r"([A-Za-z_:][\w:]*)\s*\{")
_AGENT_NAME = re.compile(rf"\b{PREFIX}\w+")


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in board.get("panels", ()):
        yield panel
        yield from panel.get("panels", ())


def queries(board: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every target of every panel, and ("annotation: <name>",
    "", PromQL) of every annotation that queries Prometheus."""
    found = [(p["title"], t["refId"], t["expr"]) for p in panels(board) if p.get("type") != "row"
             for t in p.get("targets", ())]
    return found + [(f"annotation: {a['name']}", "", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]


def variable_queries(board: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (series selector, label) of every `label_values(selector, label)` variable."""
    found: dict[str, tuple[str, str]] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, f"variable {var['name']}: {query} is not label_values(selector, label)"
        found[var["name"]] = (m[1], m[2])
    return found


def substitute(expr: str, values: Mapping[str, str] | None = None, interval: str = "1m") -> str:
    """`expr` as Grafana sends it to Prometheus: its interval variables ($__rate_interval,
    $__interval, $__range) replaced by `interval`, every template variable by its value in
    `values` or else `.*` (what "All" means on this dashboard). ValueError on a `$` left over."""
    for builtin in BUILTINS:
        expr = expr.replace(builtin, interval)

    def value(m: re.Match[str]) -> str:
        name = m[1] or m[2] or m[3]
        return (values or {}).get(name, ".*")

    expr = _VARIABLE.sub(value, expr)
    if "$" in expr:
        raise ValueError(f"a variable is left in {expr}")
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: every selector of this dashboard's panels has
    braces; a variable's selector may be a bare name."""
    if re.fullmatch(r"[A-Za-z_:][\w:]*", expr.strip()):
        return {expr.strip()}
    return {m[1] for m in _SELECTED.finditer(_strings_blanked(expr))}


def _strings_blanked(expr: str) -> str:
    """`expr` with the inside of every double-quoted string blanked (braces in a regex value are
    no PromQL structure)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + " " * (len(m[0]) - 2) + '"', expr)


def exported_names() -> set[str]:
    """The sample names of every agent metric, from the registries of a controller and a fleet."""
    names: set[str] = set()
    for registry in (Metrics(process=False).registry, FleetMetrics(lambda: []).registry):
        for family in registry.collect():
            if not family.name.startswith(PREFIX):
                continue
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
            else:
                names.add(family.name)
    return names


def model_series() -> set[str]:
    """The models' series as a repo with the default spec.metrics names them."""
    m = MetricNames()
    return {m.requests_total, m.errors_total, m.latency_histogram + "_bucket"}


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in _strings_blanked(expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


# --- the dashboard's structure ---------------------------------------------------------------


def test_the_dashboard_is_importable_anywhere() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] == "modelops-agent" and board["title"]
    assert "id" not in board or board["id"] is None  # Grafana assigns its own
    assert "__inputs" not in board  # the datasource is a variable, chosen on the dashboard
    ds = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds] == [("datasource", "prometheus")]


def _datasources(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from _datasources(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasources(value, f"{where}/{i}")


def test_no_hard_coded_datasource() -> None:
    board = dashboard()
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # the annotations of Grafana itself
    wrong = [(w, d) for w, d in _datasources(board) if d not in (DATASOURCE, builtin)]
    assert not wrong
    annotations = board["annotations"]["list"]
    assert [a["datasource"] for a in annotations if a.get("builtIn")] == [builtin]
    assert all(a["datasource"] == DATASOURCE for a in annotations if not a.get("builtIn"))
    assert [w for w, d in _datasources(board) if d == builtin] == ["/annotations/list/0"]


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    all_panels = list(panels(dashboard()))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_every_panel_has_a_datasource_targets_and_words() -> None:
    for p in panels(dashboard()):
        if p["type"] == "row":
            assert p["title"] and not p.get("targets")
            continue
        assert p["title"] and p.get("description"), p["id"]
        assert p["datasource"] == DATASOURCE, p["title"]
        targets = p.get("targets") or []
        assert targets, p["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), p["title"]
        for t in targets:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]


def test_every_variable_is_defined_and_every_query_substitutes() -> None:
    board = dashboard()
    defined = {v["name"] for v in board["templating"]["list"]}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE and var["allValue"] == ".*" and var["includeAll"], var["name"]
    texts = [e for _, _, e in queries(board)] + [s for s, _ in variable_queries(board).values()]
    for expr in texts:
        for builtin in BUILTINS:
            expr = expr.replace(builtin, "")
        used = {m[1] or m[2] or m[3] for m in _VARIABLE.finditer(expr)}
        assert used <= defined - {"datasource"}, expr
    for title, ref, expr in queries(board):
        text = substitute(expr)
        assert _balanced(text), f"{title} {ref}: {text}"
        assert "[]" not in text and "{}" not in text, f"{title} {ref}: {text}"


def test_substitute_speaks_grafanas_variable_forms() -> None:
    expr = 'sum(rate(x{a=~"$job",b=~"${model}",c=~"${cluster:regex}",d=~"[[namespace]]"}[$__rate_interval]))'
    assert substitute(expr, {"model": "m"}, interval="15s") == \
        'sum(rate(x{a=~".*",b=~"m",c=~".*",d=~".*"}[15s]))'
    with pytest.raises(ValueError):
        substitute("x{a=~\"$ \"}")


def test_every_name_is_a_real_series_and_every_agent_metric_is_shown() -> None:
    board = dashboard()
    exported = exported_names()
    known = exported | model_series()
    referenced: set[str] = set()
    texts = [e for _, _, e in queries(board)] + [s for s, _ in variable_queries(board).values()]
    for expr in texts:
        text = substitute(expr)
        names = metric_names(text)
        assert names, expr
        assert names <= known, f"unknown series {names - known} in {expr}"
        # an agent name without braces would escape the checks above
        assert set(_AGENT_NAME.findall(_strings_blanked(text))) <= names, expr
        referenced |= names
    shown = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in referenced}
    missing = {n for n in exported if n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
               not in shown}
    assert not missing, f"agent metrics on no panel: {sorted(missing)}"


def test_every_legend_names_labels_the_query_keeps() -> None:
    """A legend's {{label}} is a label the query's outer aggregation keeps (else Grafana shows it
    empty)."""
    for p in panels(dashboard()):
        for t in p.get("targets", ()):
            wanted = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            if not wanted:
                continue
            by = re.search(r"\bby\s*\(([^)]*)\)", t["expr"])
            assert by is not None, f"{p['title']} {t['refId']}: a legend of labels, and no `by`"
            kept = {label.strip() for label in by[1].split(",")}
            assert wanted <= kept, f"{p['title']} {t['refId']}: {sorted(wanted - kept)} not kept by {by[0]}"
