"""Shim: `agent registry sync` now lives in agent.promotion (plan_sync, publish,
registry_sync); these names stay importable until cli.py and the controller import them there."""

from agent.promotion import Proposal, SyncError, moved_to, plan_sync, publish
from agent.promotion import ProposalPublished as Published

__all__ = ["Proposal", "Published", "SyncError", "moved_to", "plan_sync", "publish"]
