"""Desired vs current -> Plan: per-object create/update/delete/unchanged, changed fields,
and a model-level summary. Pure: the cluster-facing side lives in agent.cluster/agent.apply."""

from agent.plan._fields import changed_paths
from agent.plan._live import DryRun, compare, live_plan, matches
from agent.plan._normalize import field_owners, normalize, owned_fields_hash
from agent.plan._plan import build_plan, change, diff_objects, model_of, summarize
from agent.plan._redact import REDACTED_PREFIX, redact
from agent.plan._secret import secret_data_matches
from agent.plan._select import Selection
from agent.plan._types import Action, ModelChange, ObjectReport, Plan, RolloutNote

__all__ = [
    "REDACTED_PREFIX",
    "Action",
    "DryRun",
    "ModelChange",
    "ObjectReport",
    "Plan",
    "RolloutNote",
    "Selection",
    "build_plan",
    "change",
    "changed_paths",
    "compare",
    "diff_objects",
    "field_owners",
    "live_plan",
    "matches",
    "model_of",
    "normalize",
    "owned_fields_hash",
    "redact",
    "secret_data_matches",
    "summarize",
]
