"""Which objects a front end works on: `--model NAME` and `-n/--namespace NS` (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.errors import AgentError
from agent.plan._plan import build_plan, model_of
from agent.plan._types import Plan


@dataclass(frozen=True)
class Selection:
    """With `models`: the objects of the models of those names (in `namespace` when given);
    with `namespace` alone: every object in it and the Namespace itself. Empty: everything."""

    namespace: str | None = None
    models: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.namespace or self.models)

    def describe(self) -> str:
        parts = ([f"--model {', '.join(self.models)}"] if self.models else []) + (
            [f"-n {self.namespace}"] if self.namespace else [])
        return " ".join(parts)

    def model(self, namespace: str, name: str) -> bool:
        if self.models and name not in self.models:
            return False
        return self.namespace is None or namespace == self.namespace

    def _matches(self, kind: str, namespace: str, name: str, model: str | None) -> bool:
        if self.models:
            if model is None:
                return False
            model_ns, _, model_name = model.partition("/")
            return self.model(model_ns, model_name)
        return self.namespace is None or namespace == self.namespace or (kind == "Namespace" and name == self.namespace)

    def object(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return self._matches(str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")),
                             model_of(obj))

    def plan(self, plan: Plan) -> Plan:
        if not self.active:
            return plan
        kept = [c for c in plan.objects if self._matches(c.kind, c.namespace, c.name, c.model)]
        if not kept:
            raise AgentError(f"no object matches {self.describe()}")
        return build_plan(kept, plan.base, plan.revision, plan.rollouts, plan.notes)

    def check_models(self, models: Iterable[tuple[str, str]]) -> None:
        if self.models and not any(self.model(ns, name) for ns, name in models):
            raise AgentError(f"no model matches {self.describe()} in the repo")
