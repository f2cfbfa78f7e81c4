"""The one model lookup: a Model of a Spec by name (and namespace). Pure."""

from __future__ import annotations

from agent.errors import AgentError
from agent.spec._types import Model, Spec


class ModelLookupError(AgentError):
    """No model of that name (`namespaces` empty), or one in several namespaces (`namespaces`
    lists them in the repo's order). The message is the CLI's; a caller with its own wording
    builds it from the fields."""

    def __init__(self, name: str, namespace: str | None, namespaces: list[str]) -> None:
        self.name, self.namespace, self.namespaces = name, namespace, namespaces
        if not namespaces:
            where = f" in namespace {namespace}" if namespace else ""
            message = f"no model {name!r}{where} in the repo"
        else:
            message = f"model {name!r} is in several namespaces ({', '.join(namespaces)}): give -n NS"
        super().__init__(message)


def find_model(spec: Spec, name: str, namespace: str | None = None) -> Model:
    """The model `name` (in `namespace` when given); ModelLookupError when there is none or the
    name is in several namespaces and none was given."""
    found = [m for m in spec.models if m.name == name and (namespace is None or m.namespace == namespace)]
    if len(found) != 1:
        raise ModelLookupError(name, namespace, [m.namespace for m in found])
    return found[0]
