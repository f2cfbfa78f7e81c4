"""The front half of the pipeline, source -> spec -> render, shared by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import _desired_cache
from agent.errors import ValidationFailed
from agent.plan import Plan, build_plan, diff_objects
from agent.render import render
from agent.source import GitSource, Revision, open_source
from agent.spec import DEFAULT_LOADER, Loader, Spec


@dataclass
class Desired:
    spec: Spec
    objects: list[dict[str, Any]]
    revision: Revision


def load_desired(path: str | Path, revision: str | None = None, *, cached: bool = True,
                 loader: Loader | None = None) -> Desired:
    """Read, validate and render the repo at PATH (a directory, or a commit of its git repo).

    Raises ValidationFailed with every problem; nothing is rendered from an invalid revision.
    A commit whose tree was rendered before by this same code is taken from the cache.
    """
    source = open_source(path, revision)
    try:
        tree_id = ""
        if cached and isinstance(source, GitSource):
            tree_id, rev = source.identify(revision)
            hit = _desired_cache.get(tree_id)
            if isinstance(hit, tuple) and len(hit) == 2:
                return Desired(spec=hit[0], objects=hit[1], revision=rev)
        snapshot = source.snapshot(revision)
    finally:
        source.close()
    spec = (loader or DEFAULT_LOADER).load(snapshot.files, snapshot.problems)
    desired = Desired(spec=spec, objects=render(spec), revision=snapshot.revision)
    if tree_id:
        _desired_cache.put(tree_id, (desired.spec, desired.objects))
    return desired


def with_traffic(desired: Desired, traffic: dict[str, int]) -> Desired:
    """`desired` with the canary traffic of some models set by their running rollouts (model key
    -> percent), re-rendered; `desired` itself when that changes nothing. While a rollout runs,
    the live split is the rollout's step, not Git's number, and must not be healed back."""
    import dataclasses

    changed = False
    models = []
    for model in desired.spec.models:
        percent = traffic.get(model.key)
        if percent is not None and model.canary is not None and model.canary.traffic != percent:
            model = dataclasses.replace(model, canary=dataclasses.replace(model.canary, traffic=percent))
            changed = True
        models.append(model)
    if not changed:
        return desired
    spec = dataclasses.replace(desired.spec, models=tuple(models))
    return Desired(spec=spec, objects=render(spec), revision=desired.revision)


def revision_info(revision: Revision) -> dict[str, str]:
    info = {"commit": revision.commit, "short": revision.short}
    if revision.commit:
        info.update(author=revision.author, message=revision.message.splitlines()[0] if revision.message else "")
        if revision.pull_request:
            info["pullRequest"] = revision.pull_request
    return info


def _offline_info(revision: Revision) -> dict[str, str]:
    """revision_info plus `ref`, the revision as the user named it (`main`, `HEAD~1`), which
    labels that side of an offline diff; a side read from disk has none."""
    info = revision_info(revision)
    if revision.commit and revision.ref:
        info["ref"] = revision.ref
    return info


def _labelled(path: str | Path, revision: str | None, label: str) -> Desired:
    try:
        return load_desired(path, revision)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.errors, revision=label) from exc


def offline_plan(path: str | Path, base: str, revision: str | None = None) -> Plan:
    """Desired state at `revision` (default: the working tree) against `base`, no cluster."""
    before = _labelled(path, base, f"the base revision {base!r}")
    after = _labelled(path, revision, f"the revision {revision!r}" if revision else "the working tree")
    return build_plan(
        diff_objects(after.objects, before.objects),
        base=_offline_info(before.revision),
        revision=_offline_info(after.revision),
    )
