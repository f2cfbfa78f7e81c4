"""`agent registry sync`: an alias moved in the model registry becomes a promotion
proposed in Git, never a deploy behind Git's back.

A Model whose stable version entry pins an immutable registry version
(`registry: {mlflow: {name: X, version: "12"}}`) follows an alias named on the command line
(MLflow `@champion`; for a GTO reference, a stage). When the alias names another version N:

- the entry pinning N is added to `spec.versions` when there is none (agent.promotion's
  byte-preserving insertion), and N becomes the canary at a traffic share, or the stable version;
- the whole repo, edit included, is loaded and every registry reference resolved, so the
  promotion gates are checked against N's run metrics: a miss refuses the proposal;
- the change is committed on branch `<prefix><namespace>-<model>-<N>` made from HEAD with a
  temporary index (the work tree and the checked-out branch are untouched), then pushed and a
  PR opened or updated with agent.promotion's helpers.

This module decides and edits (`plan_sync`); agent.promotion._sync_publish commits, pushes and
opens the PR.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent import engine
from agent.errors import AgentError
from agent.plan import Plan, build_plan, diff_objects
from agent.promotion._change import Change, describe
from agent.promotion._edit import document_at, edit_model_document
from agent.promotion._versions import NewVersion, add_version_entry
from agent.registry import RegistryError
from agent.render import render
from agent.resolve import resolve_spec
from agent.source import read_snapshot
from agent.spec import DEFAULT_LOADER, Model, ModelVersion, RegistryRef

As = Literal["canary", "stable"]


class SyncError(AgentError):
    """A registry sync that cannot be made (no registry configured, a version name taken)."""


@dataclass
class Proposal:
    """What sync decided for one model: `up_to_date` (Git has it: nothing to do) or a change of
    `file` (repo-relative to the model repo) from `before` to `after`."""

    model: str  # namespace/name
    ref: RegistryRef  # the stable entry's reference
    alias: str
    current: str  # the registry version Git's stable pins
    target: str  # the registry version the alias names now
    up_to_date: bool
    reason: str = ""
    file: str = ""
    before: str = ""
    after: str = ""
    diff: str = ""
    message: str = ""
    branch: str = ""
    plan: Plan | None = None
    new_entry: NewVersion | None = None
    version: str = ""  # the version entry (its name) that becomes canary/stable


def _norm(kind: str, version: str) -> str:
    return version.lstrip("v") if kind == "gto" else version


def _pinned(entry: ModelVersion | None) -> RegistryRef | None:
    ref = entry.registry if entry is not None else None
    if ref is None or ref.version is None or ref.kind not in ("mlflow", "gto"):
        return None
    return ref


def _ask(registries: Mapping[str, Any], ref: RegistryRef, alias: str, model: Model) -> str:
    client = registries.get(ref.kind)
    if client is None:
        raise RegistryError(f"model {model.key}: stable version {model.stable!r} names {ref}, but no {ref.kind} "
                            "registry is configured (repo.yaml spec.registries.mlflow.trackingUri or "
                            "MLFLOW_TRACKING_URI)")
    if ref.kind == "mlflow":
        resolved = client.resolve(ref.name, alias=alias)
    else:
        resolved = client.resolve(ref.name, stage=alias, repo=ref.repo)
    return str(resolved.version)


def moved_to(model: Model, alias: str, registries: Mapping[str, Any]) -> str | None:
    """The registry version `alias` names now when the model's stable entry pins another one;
    None when the stable pins no registry version or the alias names the pinned one. One
    registry lookup; what a long-lived caller asks before it plans a proposal."""
    ref = _pinned(model.versions.get(model.stable))
    if ref is None:
        return None
    assert ref.version is not None
    target = _ask(registries, ref, alias, model)
    return None if _norm(ref.kind, target) == _norm(ref.kind, ref.version) else target


def _entry_for(model: Model, ref: RegistryRef, target: str) -> str | None:
    """The name of the model's version entry pinning `target` of the same registry and name."""
    for name, entry in model.versions.items():
        other = entry.registry
        if (other is not None and other.kind == ref.kind and other.name == ref.name and other.repo == ref.repo
                and other.version is not None and _norm(ref.kind, other.version) == _norm(ref.kind, target)):
            return name
    return None


def branch_name(prefix: str, model: Model, target: str) -> str:
    return f"{prefix}{model.namespace}-{model.name}-{target}"


def plan_sync(path: str | Path, alias: str, *, registries: Mapping[str, Any] | None = None,
              names: Sequence[str] = (), namespace: str | None = None, as_: As = "canary", traffic: int = 10,
              prefix: str = "registry/", revision: str | None = "HEAD") -> list[Proposal]:
    """For each selected model whose stable entry pins a registry version: what following
    `alias` asks for, the file edited and validated (loader, then every registry reference
    resolved: the promotion gates on the run metrics). Reads the repo at `revision` (a commit;
    None: the directory as it is). Raises ValidationFailed / RegistryError / PromoteError /
    SyncError before anything is written."""
    if not 0 <= traffic <= 100:
        raise SyncError(f"traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    snapshot = read_snapshot(path, revision)
    files = dict(snapshot.files)
    spec = DEFAULT_LOADER.load(files, snapshot.problems)
    if registries is None:
        registries = engine.registries_for(spec, path)  # looked up on the module: a test seam
    cache: dict[Any, Any] = {}
    proposals: list[Proposal] = []
    resolved_before: Any = None
    for model in spec.models:
        if names and model.name not in names:
            continue
        if namespace is not None and model.namespace != namespace:
            continue
        ref = _pinned(model.versions.get(model.stable))
        if ref is None:
            continue
        assert ref.version is not None
        target = _ask(registries, ref, alias, model)
        proposal = Proposal(model=model.key, ref=ref, alias=alias, current=ref.version, target=target,
                            up_to_date=False)
        proposals.append(proposal)
        if _norm(ref.kind, target) == _norm(ref.kind, ref.version):
            proposal.up_to_date, proposal.reason = True, f"stable {model.stable!r} is {ref} already"
            continue
        rel = model.location.file
        before = files[rel].decode("utf-8")
        doc = document_at(before, model.location.line)
        text = before
        name = _entry_for(model, ref, target)
        if name is None:
            name = target
            if name in model.versions:
                raise SyncError(f"model {model.key}: {ref.kind} {ref.name}@{alias} names version {target}, but the "
                                f"version name {name!r} is taken by an entry that does not pin it: rename that "
                                "entry or add one pinning it yourself")
            proposal.new_entry = NewVersion(version=name, kind=ref.kind, name=ref.name, pinned=target, repo=ref.repo)
            text = add_version_entry(text, doc, proposal.new_entry)
        proposal.version = name
        canary = model.canary
        if as_ == "stable":
            text = edit_model_document(text, doc, Change("canary", name, 100))
            text = edit_model_document(text, doc, Change("stable"))
            change = Change("stable")
            message = describe(change, model.key, model.stable, name, None)
        else:
            if canary is not None and canary.version == name and canary.traffic == traffic:
                proposal.up_to_date, proposal.reason = True, f"canary {name!r} at {traffic}% is in Git already"
                continue
            change = Change("canary", name, traffic)
            text = edit_model_document(text, doc, change)
            message = describe(change, model.key, model.stable, canary.version if canary else None,
                               canary.traffic if canary else None)
        shown_alias = f"{ref.name}#{alias}" if ref.kind == "gto" else f"{ref.name}@{alias}"
        message += f"Registry: {ref.kind} {shown_alias} -> {target}\n"
        edited = {**files, rel: text.encode("utf-8")}
        spec_after = DEFAULT_LOADER.load(edited, snapshot.problems)  # ValidationFailed: nothing written
        resolved_after, _ = resolve_spec(spec_after, registries, cache)  # the gates on the run's metrics
        if resolved_before is None:
            resolved_before, _ = resolve_spec(spec, registries, cache)
        proposal.plan = build_plan(diff_objects(render(resolved_after), render(resolved_before)),
                                   base={"short": "before"}, revision={"short": "after"})
        proposal.file, proposal.before, proposal.after, proposal.message = rel, before, text, message
        proposal.diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), text.splitlines(keepends=True),
                                                     f"a/{rel}", f"b/{rel}"))
        proposal.branch = branch_name(prefix, model, target)
    return proposals


