"""What every registry client answers, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.errors import AgentError

__all__ = ["RegistryError", "ResolvedVersion"]


class RegistryError(AgentError):
    """A registry reference could not be resolved: the text names the registry URL (never its
    credentials), the reference and what failed."""


@dataclass(frozen=True)
class ResolvedVersion:
    """One immutable model version, as the registry has it now."""

    registry: str  # "mlflow" | "gto"
    name: str
    version: str  # the immutable version ("13")
    uri: str  # the artifact URI to serve
    run_id: str | None
    digest: str | None  # when the registry has one
    alias: str | None  # the alias (or stage) the reference named, if any
    metrics: dict[str, float] = field(default_factory=dict)  # the run's latest value per key
