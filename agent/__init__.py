"""modelops agent: keep models in production exactly as Git says.

Public API (the CLI is a thin layer over these):
    load_desired(path, revision)  -> Desired(spec, objects, revision)   source -> spec -> render
    offline_plan(path, base, rev) -> Plan                                two revisions, no cluster
    load(files) / render(spec) / diff_objects(...) / build_plan(...)     the pure core
"""

from agent._version import __version__
from agent.desired import Desired, load_desired, offline_plan
from agent.errors import AgentError, SourceError, SpecError, ValidationFailed
from agent.plan import ModelChange, ObjectReport, Plan, build_plan, diff_objects
from agent.render import render
from agent.spec import Spec, load

__all__ = [
    "AgentError",
    "Desired",
    "ModelChange",
    "ObjectReport",
    "Plan",
    "SourceError",
    "Spec",
    "SpecError",
    "ValidationFailed",
    "__version__",
    "build_plan",
    "diff_objects",
    "load",
    "load_desired",
    "offline_plan",
    "render",
]
