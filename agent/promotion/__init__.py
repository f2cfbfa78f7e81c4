"""Promotion: a Model's stable/canary (or a new registry version) changed in Git as a person
would, then proposed: committed, pushed and put in a pull request.

Pure (no git, no network, no subprocess; for the pure-core import contract):
`_change` (Change, PromoteError, describe, trailers), `_yaml_text` (byte-preserving YAML text
edits), `_edit` (edit_model_document, document_at), `_versions` (add_version_entry) and `_pull`
(the PR's text), `_overlay` (edit_overlay: an Environment's model overlay) and `_evidence` (the
live evidence a promotion between environments needs: its queries and verdict). The flows: `_local` (the edit in a work tree, committed), `_publish` (promote ->
push -> PR, the controller's write-back), `_sync_plan` / `_sync_publish` (`agent registry sync`),
with git on agent.source and forge/auth on agent.forge.
"""

from agent.promotion._change import Action, Change, PromoteError, describe, trailers
from agent.promotion._edit import document_at, edit_model_document
from agent.promotion._env_promote import (
    EnvironmentPromotion,
    PrometheusFactory,
    branch_for,
    evidence_for,
    promote_to_environment,
)
from agent.promotion._evidence import Evidence, EvidencePlan, Metric, gather, judge_evidence, plan_evidence
from agent.promotion._local import Outcome, promote
from agent.promotion._overlay import CanaryEdit, edit_overlay
from agent.promotion._publish import (
    PromotionProgress,
    PromotionResult,
    PromotionStep,
    Published,
    branch_plan,
    connect,
    open_pull,
    post_comment,
    promote_and_publish,
    publish_remote,
)
from agent.promotion._pull import PR_BODY_LIMIT, PullOutcome, pull_body, relabel, truncate
from agent.promotion._sync_plan import As, Proposal, SyncError, branch_name, moved_to, plan_sync
from agent.promotion._sync_publish import (
    ProposalPublished,
    RegistrySyncResult,
    SyncItem,
    SyncProgress,
    SyncStep,
    publish,
    registry_sync,
    sync_head,
)
from agent.promotion._versions import NewVersion, add_version_entry

__all__ = [
    "PR_BODY_LIMIT", "Action", "As", "Change", "NewVersion", "Outcome", "PromoteError", "PromotionProgress",
    "PromotionResult", "PromotionStep", "Proposal", "ProposalPublished", "Published", "PullOutcome",
    "RegistrySyncResult", "SyncError", "SyncItem", "SyncProgress", "SyncStep", "add_version_entry", "branch_name",
    "branch_plan", "connect", "describe", "document_at", "edit_model_document", "moved_to", "open_pull",
    "plan_sync", "post_comment", "promote", "promote_and_publish", "publish", "publish_remote", "pull_body",
    "registry_sync", "relabel", "sync_head", "trailers", "truncate",
]
__all__ += ["CanaryEdit", "EnvironmentPromotion", "Evidence", "EvidencePlan", "Metric", "PrometheusFactory", "branch_for",
            "edit_overlay", "evidence_for", "gather", "judge_evidence", "plan_evidence", "promote_to_environment"]
