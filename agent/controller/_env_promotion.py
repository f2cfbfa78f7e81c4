"""The controller's promotions between environments, by policy (Environment spec.promotion).

For each environment whose policy is pullRequest or commit and that promotes from another, each
model whose version there differs from the one the source environment serves is judged on the
live evidence (agent.promotion.evidence_for: served for the soak, every rule and check healthy
over it, in the source environment's Prometheus). When it holds: one commit on the followed
branch (policy commit), or one branch promote/<env>/<namespace>-<model>-<version> and one PR
(policy pullRequest) whose body carries the evidence, with trailers Model, From-Environment and
To-Environment. Idempotent like registry sync: a (environment, model, version) is published once
per process, and a restarted controller finds the open PR by its branch on the forge (and the
branch itself) and makes no second one. A refusal is audited once per figures' verdict.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.controller._rollouts import WriteBack
from agent.desired import Desired
from agent.errors import AgentError
from agent.forge import open_forge, repo_ref
from agent.promotion import Change, Evidence, PrometheusFactory, branch_for, evidence_for, publish_remote
from agent.source import GitAuth

log = logging.getLogger("agent.controller.environments")

# metric(environment, model, outcome): outcome one of "promoted", "refused", "error"
Metric = Callable[[str, str, str], None]


@dataclass
class EnvironmentPromotions:
    """The promotion ticks of one controller (the fleet calls tick periodically)."""

    write_back: WriteBack | None
    prometheus: PrometheusFactory
    record: Callable[..., None]  # audit: record(event, **fields)
    metric: Metric = lambda _env, _model, _outcome: None
    prometheus_url: str | None = None  # when the source environment names no Prometheus
    done: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (env, model, version) -> branch or commit
    refused: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)  # last reasons audited
    ticks: int = 0

    def tick(self, desired_whole: Desired, where: Collection[str] | None = None,
             now: float | None = None) -> list[dict[str, Any]]:
        """Judge and publish every due promotion of the whole repo's `desired_whole` (unresolved
        or resolved). `where`: the environments this controller drives (None: all); a promotion
        into an environment is made by the controller that drives it. Returns the audit fields of
        each promotion made. Never raises for one model: its error is audited and logged."""
        self.ticks += 1
        spec = desired_whole.spec
        at = time.time() if now is None else now
        made: list[dict[str, Any]] = []
        for env in spec.environments:
            if env.promotion == "manual" or env.promotes_from is None or (where is not None and env.name not in where):
                continue
            source = next((e for e in spec.environments if e.name == env.promotes_from), None)
            if source is None:
                continue
            for model in env.models:
                origin = source.model(model.namespace, model.name)
                if origin is None or origin.stable == model.stable:
                    continue
                key = (env.name, model.key, origin.stable)
                if key in self.done:
                    continue
                try:
                    fields = self._one(desired_whole, env.name, env.promotion, model.name, model.namespace, key, at)
                except AgentError as exc:
                    log.error("promotion of %s to %s: %s", model.key, env.name, exc)
                    self.record("environment-promotion", model=model.key, to=env.name, version=origin.stable,
                                outcome="error", error=str(exc)[:500])
                    self.metric(env.name, model.key, "error")
                    continue
                if fields is not None:
                    made.append(fields)
        return made

    def _one(self, desired: Desired, env: str, policy: str, name: str, namespace: str, key: tuple[str, str, str],
             now: float) -> dict[str, Any] | None:
        evidence = evidence_for(desired.spec, name, namespace, env, prometheus_url=self.prometheus_url,
                                prometheus=self.prometheus, now=now, commit=desired.revision.commit)
        plan = evidence.plan
        if not evidence.holds:
            if self.refused.get(key) != self._verdicts(evidence):
                self.refused[key] = self._verdicts(evidence)
                log.info("promotion of %s %s to %s refused: %s", plan.key, plan.version, env, "; ".join(evidence.reasons))
                self.record("environment-promotion", **self._fields(evidence), outcome="refused",
                            reasons=list(evidence.reasons))
                self.metric(env, plan.key, "refused")
            return None
        wb = self.write_back
        if wb is None:
            raise AgentError(f"promotion policy {policy} needs the followed Git remote (not --watch-dir)")
        branch = branch_for(plan) if policy == "pullRequest" else None
        fields = {**self._fields(evidence), "policy": policy, **self._publish(wb, evidence, branch)}
        self.done[key] = str(fields.get("pull_request") or fields.get("pushed") or branch or "")
        log.info("promotion of %s %s to %s: %s", plan.key, plan.version, env, fields)
        self.record("environment-promotion", **fields, outcome="proposed" if branch else "pushed")
        self.metric(env, plan.key, "promoted")
        return fields

    @staticmethod
    def _verdicts(evidence: Evidence) -> tuple[str, ...]:
        """What a refusal is audited again on: which figures fail (not their exact values)."""
        return tuple(sorted(reason.split(" ", 1)[0] for reason in evidence.reasons))

    @staticmethod
    def _fields(evidence: Evidence) -> dict[str, Any]:
        p = evidence.plan
        return {"model": p.key, "from": p.source, "to": p.target, "version": p.version, "was": p.current,
                "served_seconds": evidence.served_seconds, "staging_commit": evidence.commit or None,
                "metrics": {m.name: m.value for m in evidence.metrics}}

    def _publish(self, wb: WriteBack, evidence: Evidence, branch: str | None) -> dict[str, Any]:
        """Push the overlay edit to the followed branch (branch None) or to `branch` with a PR (an
        open one on the forge is found again: no clone, no second PR)."""
        plan = evidence.plan
        token = wb.token()
        auth = GitAuth(token=token, username=wb.username, ca_file=wb.ca_file, ssh_command=wb.ssh_command)
        forge = None
        work = Path(tempfile.mkdtemp(prefix="modelops-env-promotion-"))
        try:
            if branch is not None:
                if token is None:
                    raise AgentError("a promotion pull request needs a token (--git-token-file or --git-token-env)")
                forge = open_forge(repo_ref(wb.url, wb.forge_kind, wb.forge_api_url), token, ca_file=wb.ca_file)
                found = forge.find_pull(branch, wb.branch)
                if found is not None:
                    return {"branch": branch, "pushed": None, "pull_request": str(found.url), "found": True}
            published = publish_remote(wb.url, wb.branch, wb.path, plan.name, plan.namespace,
                                       Change("stable", plan.version), auth=auth, work=work / "repo", head=branch,
                                       forge=forge, environment=plan.target, message=evidence.message())
        finally:
            if forge is not None:
                forge.close()
            shutil.rmtree(work, ignore_errors=True)
        pr = published.pull_request
        return {"branch": branch, "pushed": published.commit, "pull_request": pr.url if pr is not None else None}
