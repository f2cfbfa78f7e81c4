"""Promotion between environments, pure parts: the overlay edit (bytes kept) and the verdict on
the evidence (every answer validated: no data, non-finite or an error refuses)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.promotion import PromoteError, edit_overlay, judge_evidence, plan_evidence
from agent.promotion._evidence import SERVED
from agent.spec import DEFAULT_LOADER, Spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "environments"


def _spec() -> Spec:
    files = {str(p.relative_to(EXAMPLE)): p.read_bytes() for p in EXAMPLE.rglob("*.yaml")}
    return DEFAULT_LOADER.load(files, [])


def test_overlay_stable_replaced_bytes_kept() -> None:
    text = (EXAMPLE / "environments" / "production.yaml").read_text()
    out = edit_overlay(text, 0, ["fraud-scorer"], stable="13", canary="drop")
    assert out == text.replace('      stable: "12"', '      stable: "13"', 1)


def test_overlay_entry_and_models_added() -> None:
    text = "kind: Environment\nmetadata: {name: p}\nspec:\n  clusters: [a]  # one\n"
    assert edit_overlay(text, 0, ["m"], stable="2") == text + '  models:\n    m:\n      stable: "2"\n'
    flow = 'spec:\n  models:\n    m: {stable: "1", canary: {version: "2", traffic: 10}}\n'
    assert edit_overlay(flow, 0, ["m"], stable="2", canary="drop") == 'spec:\n  models:\n    m: {stable: "2"}\n'
    assert edit_overlay(flow, 0, ["m"], stable="2", canary="null") == (
        'spec:\n  models:\n    m: {stable: "2", canary: null}\n')


def test_overlay_not_a_mapping() -> None:
    with pytest.raises(PromoteError, match="not a mapping"):
        edit_overlay("spec:\n  models:\n    m: [1]\n", 0, ["m"], stable="2")


def test_plan_and_verdict() -> None:
    spec = _spec()
    plan = plan_evidence(spec, "fraud-scorer", None, "production")
    assert (plan.source, plan.version, plan.current) == ("staging", "13", "12")
    names = [q.name for q in plan.queries]
    assert names == ["error-rate", "p95-latency", "requests"]  # production's rollout analysis
    assert 'version="13"' in plan.served_expr and "[86400s]" in plan.queries[0].expr
    good = {SERVED: 90000.0, "error-rate": 0.001, "p95-latency": 0.1, "requests": 5000.0}
    assert judge_evidence(plan, good, {}, "http://u:secret@prom:9090/x?t=1").holds
    assert judge_evidence(plan, good, {}, "http://u:secret@prom:9090/x").prometheus == "http://prom:9090/x"
    for bad, why in [({**good, SERVED: 3600.0}, "less than the soak"), ({**good, "error-rate": 0.2}, "> max 0.01"),
                     ({**good, "error-rate": math.inf}, "not a finite number"),
                     ({**good, "error-rate": None}, "no data"), ({**good, SERVED: None}, "no data"),
                     ({**good, SERVED: math.nan}, "no data"), ({**good, "requests": 0.0}, "requests")]:
        ev = judge_evidence(plan, bad, {}, "http://prom")
        assert not ev.holds and any(why in r for r in ev.reasons), (bad, ev.reasons)
    ev = judge_evidence(plan, good, {"p95-latency": "malformed sample"}, "http://prom")
    assert not ev.holds and any("malformed sample" in r for r in ev.reasons)


def test_plan_refusals() -> None:
    spec = _spec()
    with pytest.raises(PromoteError, match="promotes from no environment"):
        plan_evidence(spec, "fraud-scorer", None, "staging")
    with pytest.raises(PromoteError, match="no model"):
        plan_evidence(spec, "nope", None, "production")
