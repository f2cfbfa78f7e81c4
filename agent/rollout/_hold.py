"""Why a rollout step holds: it was not judged, so it neither advances nor fails.

A step holds while nothing can judge it (no Prometheus configured, Prometheus unreachable or
not answering in time) or while the analysis cannot say (too few requests, no data, a value
that is not a finite number, an answer that could not be used). The kind is a closed set (a
metric label); the reason is one line for people. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from agent.rollout._analysis import REQUESTS, CheckResult
from agent.spec import Rollout

HoldKind = Literal["no-prometheus", "prometheus", "requests", "not-judged", "no-data"]
HOLD_KINDS: tuple[str, ...] = get_args(HoldKind)

# the kind that explains a hold best first: what stops every query, then what stops them all
# from being judged (too few requests), then a single query's trouble
_PRIORITY = ("no-prometheus", "prometheus", "requests", "not-judged", "no-data")


@dataclass(frozen=True)
class Unjudged:
    """Why the current analysis did not judge the step."""

    kind: HoldKind
    reason: str


NO_PROMETHEUS = Unjudged("no-prometheus", "no Prometheus configured (agent run --prometheus-url)")


def unreachable(why: str) -> Unjudged:
    """Prometheus could not be asked at all (every query of the step failed to reach it)."""
    return Unjudged("prometheus", f"Prometheus unreachable: {why}" if not why.startswith("Prometheus") else why)


@dataclass(frozen=True)
class Hold:
    """A step that has not been judged since `since` (Unix time), and why (the latest reason)."""

    kind: HoldKind
    reason: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "since": self.since}


def has_analysis(rollout: Rollout) -> bool:
    """Whether anything judges the steps (rules, checks or a request count): without, a step
    advances on time alone and needs no Prometheus."""
    analysis = rollout.analysis
    return analysis is not None and bool(analysis.rules or analysis.checks or analysis.min_requests > 0)


def _kind(check: CheckResult) -> str:
    if check.hold in HOLD_KINDS:
        return check.hold
    if check.name == REQUESTS:
        return "requests"
    return "no-data" if check.value is None else "not-judged"


def unjudged(checks: Sequence[CheckResult]) -> Unjudged | None:
    """Why `checks` (one analysis) do not judge the step; None when every check was judged."""
    pending = [c for c in checks if c.ok is None]
    if not pending:
        return None
    kinds = {c.name: _kind(c) for c in pending}
    kind = min(kinds.values(), key=_PRIORITY.index)
    if kind == "no-data":
        names = [c.name for c in pending if kinds[c.name] == "no-data"]
        return Unjudged("no-data", f"no data for {', '.join(names)}")
    first = next(c for c in pending if kinds[c.name] == kind)
    return Unjudged(kind, first.why or first.message)  # type: ignore[arg-type]


def hold_of(raw: Any, check_time: Any) -> Hold:
    """A stored hold (`Hold.to_json`); ValueError for anything else. `check_time(d, key)`
    reads a Unix time as the state's other times are read."""
    if not isinstance(raw, dict) or set(raw) != {"kind", "reason", "since"}:
        raise ValueError("rollout state: hold must be an object with kind, reason and since")
    kind, reason = raw["kind"], raw["reason"]
    if kind not in HOLD_KINDS:
        raise ValueError(f"rollout state: hold kind must be one of {', '.join(HOLD_KINDS)}")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise ValueError("rollout state: hold reason must be a string (at most 2000 characters)")
    return Hold(kind, reason, check_time(raw, "since"))
