"""`agent promote MODEL --to ENV` as a library: the evidence gathered in the source
environment's Prometheus (agent.promotion._evidence), and only when it holds, the target
environment's overlay edited (locally, or committed, pushed and put in a PR as `agent promote`
does). Refused: nothing is written, committed or pushed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError
from agent.forge import ForgeOptions
from agent.metrics_source import MetricsError, Prometheus
from agent.promotion._change import Change, PromoteError
from agent.promotion._evidence import Evidence, EvidencePlan, gather, plan_evidence
from agent.promotion._publish import PromotionProgress, PromotionResult, promote_and_publish
from agent.source import GitError, git_head, read_snapshot
from agent.spec import DEFAULT_LOADER, Spec

PrometheusFactory = Callable[[str], Prometheus]


def branch_for(plan: EvidencePlan) -> str:
    """One branch per model, version and target environment: found again after a restart."""
    return f"promote/{plan.target}/{plan.namespace}-{plan.name}-{plan.version}"


def evidence_for(spec: Spec, name: str, namespace: str | None, to: str, *, prometheus_url: str | None = None,
                 prometheus: PrometheusFactory = Prometheus, now: float | None = None,
                 commit: str = "") -> Evidence:
    """The evidence for promoting `name` to `to`, asked of the source environment's Prometheus
    (its spec.prometheus, else `prometheus_url`). PromoteError without a Prometheus to ask."""
    plan = plan_evidence(spec, name, namespace, to)
    url = plan.prometheus or prometheus_url
    if not url:
        raise PromoteError(f"environment {plan.source!r} names no Prometheus (spec.prometheus): give "
                           "--prometheus-url URL to read its evidence")
    client = prometheus(url)
    return gather(plan, client, url, time.time() if now is None else now, commit, failure=MetricsError)


@dataclass
class EnvironmentPromotion:
    """What `agent promote --to` did: the evidence, and the promotion (None: refused)."""

    evidence: Evidence
    result: PromotionResult | None = None


def promote_to_environment(path: str | Path, name: str, namespace: str | None, to: str, *,
                           prometheus_url: str | None = None, prometheus: PrometheusFactory = Prometheus,
                           commit: bool = False, branch: str | None = None, dry_run: bool = False,
                           push: str | None = None, base: str | None = None, open_pr: bool = False,
                           options: ForgeOptions | None = None,
                           progress: PromotionProgress | None = None) -> EnvironmentPromotion:
    """Judge the evidence (on the repo at PATH as it is), then, when it holds, make the version
    the source environment serves stable in `to`'s overlay (agent.promotion.promote_and_publish;
    pushing without --branch: branch promote/<env>/<namespace>-<model>-<version>)."""
    snapshot = read_snapshot(path, None)
    spec = DEFAULT_LOADER.load(dict(snapshot.files), snapshot.problems)
    try:
        head = git_head(Path(path))
    except (GitError, AgentError):
        head = ""
    evidence = evidence_for(spec, name, namespace, to, prometheus_url=prometheus_url, prometheus=prometheus,
                            commit=head)
    outcome = EnvironmentPromotion(evidence=evidence)
    if not evidence.holds:
        return outcome
    plan = evidence.plan
    if (push is not None or open_pr) and branch is None:
        branch = branch_for(plan)
    outcome.result = promote_and_publish(
        path, plan.name, plan.namespace, Change("stable", plan.version), commit=commit, branch=branch,
        dry_run=dry_run, push=push, base=base, open_pr=open_pr, options=options, progress=progress,
        environment=to, message=evidence.message())
    return outcome
