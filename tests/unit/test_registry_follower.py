"""The controller's registry ticks, without a registry: when a commit needs them at all, what
counts as a moved reference, and that a re-resolution finding the same versions changes nothing."""

from __future__ import annotations

from typing import Any

from agent.controller._registry import RegistryFollower, moved
from agent.engine import Desired, resolutions_key
from agent.registry import ResolvedVersion
from agent.resolve import Resolution
from agent.source import Revision
from agent.spec import Model, ModelVersion, RegistryRef, RepositoryConfig, Spec


def _spec(*entries: ModelVersion, stable: str) -> Spec:
    model = Model(namespace="fraud", name="scorer", format="sklearn", runtime="rt", backend="kserve",
                  stage="production", versions={e.version: e for e in entries}, stable=stable)
    return Spec(config=RepositoryConfig(name="t"), models=(model,))


def _desired(spec: Spec, resolved: dict[str, tuple[str, str]] | None = None) -> Desired:
    resolutions: list[Any] = []
    for name, (version, uri) in (resolved or {}).items():
        ref = spec.models[0].versions[name].registry
        assert ref is not None
        resolutions.append(Resolution(key="fraud/scorer", version=name, ref=ref, resolved=ResolvedVersion(
            registry=ref.kind, name=ref.name, version=version, uri=uri, run_id=None, digest=None, alias=ref.alias)))
    return Desired(spec=spec, objects=[], revision=Revision(), resolutions=resolutions)


ALIAS = ModelVersion(version="champion", uri="", registry=RegistryRef(kind="mlflow", name="scorer", alias="champion"))
PINNED = ModelVersion(version="12", uri="", registry=RegistryRef(kind="mlflow", name="scorer", version="12"))
PLAIN = ModelVersion(version="1", uri="s3://m/1")


def follower(**kw: Any) -> RegistryFollower:
    return RegistryFollower(interval=kw.pop("interval", 60.0), record=lambda *a, **k: None, **kw)


def test_ticks_only_for_a_commit_that_can_move() -> None:
    assert follower().wanted(_desired(_spec(ALIAS, stable="champion")))
    assert not follower().wanted(_desired(_spec(PINNED, stable="12")))  # pinned: immutable, never asked again
    assert not follower().wanted(_desired(_spec(PLAIN, stable="1")))
    assert follower(sync_alias="champion").wanted(_desired(_spec(PINNED, stable="12")))  # sync follows the alias
    assert not follower(sync_alias="champion").wanted(_desired(_spec(PLAIN, stable="1")))
    assert not follower(interval=0).wanted(_desired(_spec(ALIAS, stable="champion")))
    assert not follower().wanted(None)


def test_moved_names_each_reference_that_resolves_differently() -> None:
    spec = _spec(ALIAS, PINNED, stable="champion")
    before = _desired(spec, {"champion": ("12", "s3://mlflow/a/model"), "12": ("12", "s3://mlflow/a/model")})
    same = _desired(spec, {"champion": ("12", "s3://mlflow/a/model"), "12": ("12", "s3://mlflow/a/model")})
    after = _desired(spec, {"champion": ("13", "s3://mlflow/b/model"), "12": ("12", "s3://mlflow/a/model")})
    assert resolutions_key(same.resolutions) == resolutions_key(before.resolutions)
    assert resolutions_key(after.resolutions) != resolutions_key(before.resolutions)
    assert moved(before, same) == []
    assert moved(before, after) == ["fraud/scorer champion: mlflow scorer@champion 12 -> 13 (s3://mlflow/b/model)"]


def test_refresh_without_a_moving_reference_asks_nothing() -> None:
    asked: list[str] = []

    class Never(RegistryFollower):
        def registries(self, desired: Desired, repo: Any) -> dict[str, Any]:
            asked.append("registries")
            return {}

    pinned = _desired(_spec(PINNED, stable="12"))
    assert Never(interval=60.0, record=lambda *a, **k: None).refresh(pinned, pinned, ".") is None
    assert asked == []


def test_refresh_that_finds_the_same_versions_keeps_the_current_state() -> None:
    """An unmoved alias costs the lookup only: the current desired state is kept, not re-rendered."""
    answers: list[str] = []

    class Registry:
        def resolve(self, name: str, **selector: Any) -> ResolvedVersion:
            answers.append(name)
            return ResolvedVersion(registry="mlflow", name=name, version="12", uri="s3://mlflow/a/model", run_id=None,
                                   digest=None, alias=selector.get("alias"))

    class Fixed(RegistryFollower):
        def registries(self, desired: Desired, repo: Any) -> dict[str, Any]:
            return {"mlflow": Registry()}

    spec = _spec(ALIAS, stable="champion")
    current = _desired(spec, {"champion": ("12", "s3://mlflow/a/model")})
    assert Fixed(interval=60.0, record=lambda *a, **k: None).refresh(_desired(spec), current, ".") is None
    assert answers == ["scorer"]
