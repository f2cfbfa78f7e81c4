"""The documents of `-o json|yaml` for the commands whose text form is a story of steps
(promote, registry sync): what was decided and done, as data. Keys are camelCase like the
other documents (status, diff)."""

from __future__ import annotations

from typing import Any

from agent.promotion import Outcome, Proposal


def promote_document(outcome: Outcome, plan: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
    """`agent promote -o json|yaml`: the edit (an agent.promotion.Outcome) and its plan; the CLI
    adds `push` and `pullRequest` when it pushes."""
    return {
        "model": outcome.model,
        "file": str(outcome.file),
        "changed": outcome.after != outcome.before,
        "dryRun": dry_run,
        "diff": outcome.diff,
        "message": outcome.message,
        "commit": outcome.commit,
        "branch": outcome.branch,
        "plan": plan,
        "push": None,
        "pullRequest": None,
    }


def proposal_document(proposal: Proposal, plan: dict[str, Any] | None, *, dry_run: bool) -> dict[str, Any]:
    """One model of `agent registry sync -o json|yaml` (an agent.promotion.Proposal): the
    CLI fills `commit`, `pushed` and `pullRequest` as it publishes."""
    return {
        "model": proposal.model,
        "registry": {"kind": proposal.ref.kind, "name": proposal.ref.name},
        "alias": proposal.alias,
        "registryVersion": proposal.target,
        "gitVersion": proposal.current,
        "upToDate": proposal.up_to_date,
        "reason": proposal.reason,
        "branch": proposal.branch or None,
        "file": proposal.file or None,
        "diff": proposal.diff,
        "message": proposal.message,
        "plan": plan,
        "dryRun": dry_run,
        "commit": None,
        "pushed": False,
        "pullRequest": None,
    }
