"""`spec.rollout` of a Model -> Rollout (steps, strategy, analysis), and the check of its
analysis rules against the Monitors of the repo."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.errors import SpecError
from agent.spec._common import missing_field, seconds_of
from agent.spec._types import Analysis, AnalysisCheck, Model, RepositoryConfig, Rollout
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document

# a placeholder is `{word}`; PromQL's own braces hold matchers (`{model="x"}`), never a bare word
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PLACEHOLDERS = ("namespace", "model", "version", "track", "interval")


def read_rollout(doc: Document, raw: Mapping[str, Any], errors: list[SpecError]) -> Rollout:
    """The rollout of a Model, defaults applied. Problems the schema cannot state (order of
    the steps, which fields go with which strategy, placeholders, min <= max) are errors on
    the field; the Rollout is still returned, the caller drops the Model on any error."""
    at: list[str | int] = ["spec", "rollout"]
    strategy = raw["strategy"]
    steps = tuple(int(s) for s in raw.get("steps", ()))
    if strategy == "canary":
        if "steps" not in raw:
            errors.append(missing_field(doc, [*at, "steps"], "required for the canary strategy (traffic percentages ending at 100)"))
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                errors.append(doc.error([*at, "steps", i], f"steps must be strictly ascending: {steps[i]} after {steps[i - 1]}"))
        if steps and steps[-1] != 100:
            errors.append(doc.error([*at, "steps", len(steps) - 1],
                                    f"the last step must be 100, not {steps[-1]}: the canary takes all traffic before it becomes stable"))
        if "scaleDownDelay" in raw:
            errors.append(doc.error([*at, "scaleDownDelay"], "applies to the blueGreen strategy only"))
    elif "steps" in raw:
        errors.append(doc.error([*at, "steps"], "steps apply to the canary strategy only: blueGreen switches all traffic at once"))

    interval = str(raw.get("interval", Rollout.interval))
    if seconds_of(interval) <= 0:
        errors.append(doc.error([*at, "interval"], f"must be longer than 0, got {interval!r}"))
    scale_down_delay = str(raw.get("scaleDownDelay", Rollout.scale_down_delay))
    return Rollout(
        strategy=strategy,
        steps=steps,
        interval=interval,
        interval_seconds=seconds_of(interval),
        analysis=_analysis(doc, raw.get("analysis") or {}, [*at, "analysis"], errors),
        max_failed_checks=int(raw.get("maxFailedChecks", Rollout.max_failed_checks)),
        on_success=raw.get("onSuccess", Rollout.on_success),
        on_failure=raw.get("onFailure", Rollout.on_failure),
        revert_pull_request=bool(raw.get("revertPullRequest", Rollout.revert_pull_request)),
        scale_down_delay=scale_down_delay,
        scale_down_delay_seconds=seconds_of(scale_down_delay),
    )


def _analysis(doc: Document, raw: Mapping[str, Any], at: list[str | int], errors: list[SpecError]) -> Analysis:
    """The analysis of a rollout; its rule names are checked against the Monitors later
    (`check_rollout_rules`), once those are loaded."""
    checks: list[AnalysisCheck] = []
    names: set[str] = set()
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for i, c in enumerate(raw.get("checks", ())):
        here: list[str | int] = [*at, "checks", i]
        if c["name"] in names:
            errors.append(doc.error([*here, "name"], f"duplicate check name {c['name']!r}"))
        names.add(c["name"])
        for word in dict.fromkeys(_PLACEHOLDER.findall(c["query"])):
            if word not in PLACEHOLDERS:
                errors.append(doc.error([*here, "query"], f"unknown placeholder {{{word}}} (allowed: {allowed})"))
        low, high = c.get("min"), c.get("max")
        if low is None and high is None:
            errors.append(doc.error(here, "a check needs min, max or both"))
        elif low is not None and high is not None and low > high:
            errors.append(doc.error([*here, "min"], f"min ({low:g}) is greater than max ({high:g})"))
        checks.append(AnalysisCheck(
            name=c["name"], query=c["query"],
            min=float(low) if low is not None else None, max=float(high) if high is not None else None,
        ))
    return Analysis(rules=tuple(raw.get("rules", ())), checks=tuple(checks), min_requests=int(raw.get("minRequests", 0)))


def check_rollout_rules(models: Mapping[str, Model], model_docs: Mapping[str, Document],
                         monitor_docs: list[Document], config: RepositoryConfig, errors: list[SpecError],
                         lost: Unreadable | None = None) -> None:
    """Each `spec.rollout.analysis.rules` entry must name a rule of a Monitor of that Model.
    The rule names come from every Monitor document that passed the schema (a Monitor with
    other errors still declares its rules); a Model that a schema-invalid Monitor may name is
    not checked, as its rules are unknown and "not found" would mislead."""
    rules: dict[str, set[str]] = {}
    unreadable: set[str] = set()
    for d in monitor_docs:
        meta, spec = d.data.get("metadata"), d.data.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            continue
        key = f"{meta.get('namespace', config.default_namespace)}/{spec.get('model')}"
        if d.schema_errors:
            unreadable.add(key)
            continue
        rules.setdefault(key, set()).update(r["name"] for r in spec["rules"])
    for key, model in models.items():
        if model.rollout is None or not model.rollout.analysis.rules or key in unreadable:
            continue
        if lost is not None and lost.may_watch(model.name):  # a Monitor that did not parse may declare them
            continue
        known = rules.get(key, set())
        shown = ", ".join(sorted(known)) if known else f"no Monitor of Model {model.name!r} declares rules"
        for i, name in enumerate(model.rollout.analysis.rules):
            if name not in known:
                errors.append(model_docs[key].error(
                    ["spec", "rollout", "analysis", "rules", i],
                    f"rule {name!r} is not a rule of a Monitor of Model {model.name!r} ({shown})"))
