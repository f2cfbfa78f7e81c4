"""Every call the demos make into the agent's library, in one place.

The demos show the agent at work: they load a model repo, apply it, wait for it to settle, plan a
change against the cluster, and promote a model with a PR and comment on it as a user would with
`agent promote ... --open-pr` and `agent pr-comment`. Each goes through one function here, onto
the entries every front end uses: agent.engine (load_desired, Engine, wait_healthy) and
agent.promotion (promote_and_publish, post_comment). The promotion steps say what they did in the
words of the command they stand for.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agent import output
from agent.cluster import Cluster
from agent.engine import Desired, Engine, EngineOptions, SyncResult, load_desired, wait_healthy
from agent.errors import AgentError
from agent.forge import ForgeOptions
from agent.output import visible
from agent.plan import Plan
from agent.promotion import Change, PromotionResult, PromotionStep, post_comment, promote_and_publish
from agent.source import redact_url

__all__ = ["Desired", "SyncResult", "apply", "comment", "load", "plan", "promote", "settle"]


def load(repo: Path) -> Desired:
    """The repo's HEAD, read, validated and rendered (`agent validate`/`render`)."""
    return load_desired(repo, "HEAD")


def apply(desired: Desired, cluster: Cluster, audit_log: Path) -> SyncResult:
    """`agent apply --audit-log AUDIT_LOG`: the cluster made to match `desired`, audited; a new
    KServe model's canary held back until its stable revision is Ready, then applied."""
    return Engine(cluster, EngineOptions(audit_log=audit_log)).apply(desired)


def settle(desired: Desired, cluster: Cluster, timeout: float) -> dict[str, Any]:
    """`agent status` once every model settled (or `timeout` seconds passed): its document."""
    return wait_healthy(desired, cluster, timeout=timeout)


def plan(desired: Desired, cluster: Cluster) -> Plan:
    """`agent diff` against the cluster: the live plan of `desired`."""
    return Engine(cluster).plan(desired).plan


def _say(line: str) -> None:
    print(visible(line))


def _told(step: PromotionStep, result: PromotionResult) -> None:
    """What `agent promote` prints at each step: the edit once it is made, the push once done."""
    if step == "pushed":
        if result.target is not None:
            _say(f"pushed {result.target.head} to {redact_url(result.target.url)}")
        return
    outcome = result.outcome
    sys.stdout.write(output.text(outcome.plan, show_diff=False))
    if outcome.after == outcome.before:
        _say(f"no change: {outcome.model} is already so; nothing written")
    elif outcome.commit:
        where = f" on branch {outcome.branch}" if outcome.branch else ""
        _say(f"committed {outcome.commit[:12]}{where}: {outcome.message.splitlines()[0]}")


def promote(repo: Path, model: str, change: Change, branch: str, options: ForgeOptions) -> PromotionResult:
    """`agent promote MODEL REPO ... --branch BRANCH --open-pr` with the forge `options`: the
    change committed on BRANCH, pushed to origin, its PR opened (or updated); told as it goes."""
    result = promote_and_publish(repo, model, None, change, branch=branch, open_pr=True, options=options,
                                 progress=_told)
    pr, target = result.pull_request, result.target
    if pr is not None and target is not None:
        _say(f"{'opened' if pr.created else 'updated'} PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    return result


def comment(number: int, body_file: Path, remote: str, options: ForgeOptions) -> str:
    """`agent pr-comment NUMBER --body-file BODY_FILE --remote REMOTE` with the forge `options`:
    the file kept as the one plan comment on PR `number`; told, and its URL returned."""
    body = body_file.read_text(encoding="utf-8")
    if not body.strip():
        raise AgentError(f"{body_file} is empty: nothing to post")
    created, url = post_comment(number, body, "plan", remote, options)
    _say(f"{'created' if created else 'updated'} comment {url}")
    return url
