"""The desired state: source -> spec -> render (+ registries), shared by every command."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.desired import _cache as _desired_cache
from agent.errors import SourceError, ValidationFailed
from agent.plan import Plan, build_plan, diff_objects
from agent.render import render
from agent.rollout import traffic_notes
from agent.source import GitSource, Revision, SignerKeys, decrypt_snapshot, open_source, verify_commit
from agent.spec import DEFAULT_LOADER, Environment, Loader, Spec
from agent.spec import environment as spec_environment
from agent.spec import for_environment as spec_for_environment


@dataclass
class Desired:
    spec: Spec
    objects: list[dict[str, Any]]
    revision: Revision
    resolutions: list[Any] = field(default_factory=list)  # agent.resolve.Resolution per registry version
    unread: tuple[str, ...] = ()  # SOPS files left out (validate, no age identity given): never apply this


def load_desired(path: str | Path, revision: str | None = None, *, cached: bool = True,
                 loader: Loader | None = None, resolve: bool = True, signers: SignerKeys | None = None,
                 keyless: Literal["error", "skip"] = "error", environment: str | None = None) -> Desired:
    """Read, validate and render the repo at PATH (a directory, or a commit of its git repo).

    Raises ValidationFailed with every problem; nothing is rendered from an invalid revision.
    A commit whose tree was rendered before by this same code is taken from the cache.
    Registry references are resolved (`resolve`; `agent validate` stays offline without it).
    `signers`: the commit must be signed by a key they allow, checked before any file of it is
    read (agent.errors.SignatureError otherwise); a working tree (no revision) is refused.
    SOPS-encrypted files are decrypted in memory (agent.source.decrypt_snapshot; `keyless="skip"`:
    left out when no age identity is given, for `agent validate`); a repo holding any is never
    cached on disk, and a problem's message that would show a decrypted value is withheld.
    `environment`: the Desired of that environment of the repo (for_environment); without it a
    repo that declares environments has no objects of its own (each environment renders its own).
    """
    if environment is not None:
        whole = load_desired(path, revision, cached=cached, loader=loader, resolve=False, signers=signers,
                             keyless=keyless)
        return for_environment(whole, environment, path if resolve else None)
    source = open_source(path, revision)
    asked, signer = revision, ""
    try:
        if signers is not None:
            revision, signer = _verified(source, revision, signers)
        tree_id = ""
        if cached and isinstance(source, GitSource):
            tree_id, rev = source.identify(revision)
            hit = _desired_cache.get(tree_id)
            if isinstance(hit, tuple) and len(hit) == 2:
                hit_desired = Desired(spec=hit[0], objects=hit[1], revision=_signed(rev, signer, asked))
                return resolve_registries(hit_desired, path) if resolve else hit_desired
        snapshot = source.snapshot(revision)
        snapshot.revision = _signed(snapshot.revision, signer, asked)
    finally:
        source.close()
    snapshot = decrypt_snapshot(snapshot, keyless=keyless)
    sealed = snapshot.sealed
    try:
        spec = (loader or DEFAULT_LOADER).load(snapshot.files, snapshot.problems)
    except ValidationFailed as exc:
        if sealed is None:
            raise
        raise ValidationFailed(sealed.scrub(exc.errors), exc.revision, exc.target) from None
    desired = Desired(spec=spec, objects=_rendered(spec), revision=snapshot.revision,
                      unread=tuple(sorted(sealed.paths)) if sealed is not None and sealed.skipped else ())
    if tree_id and sealed is None:  # decrypted Secrets never reach the disk cache
        _desired_cache.put(tree_id, (desired.spec, desired.objects))  # unresolved: an alias may move
    return resolve_registries(desired, path) if resolve else desired


def _rendered(spec: Spec) -> list[dict[str, Any]]:
    """The objects of a Spec; none for a repo that declares environments (each renders its own)."""
    return [] if spec.environments else render(spec)


def for_environment(desired: Desired, name: str, repo: str | Path | None = None,
                    registries: dict[str, Any] | None = None) -> Desired:
    """The Desired of environment `name`, from the whole repo's `desired` loaded unresolved
    (agent.spec.for_environment, rendered; its registry references resolved when `repo` is
    given, through `registries` if given). UnknownEnvironment for a name the repo lacks."""
    spec = spec_for_environment(desired.spec, name)
    env = Desired(spec=spec, objects=render(spec), revision=desired.revision, unread=desired.unread)
    return resolve_registries(env, repo, registries) if repo is not None else env


def _verified(source: Any, revision: str | None, signers: SignerKeys) -> tuple[str, str]:
    """The commit `revision` names, verified (so the files read next are that commit's, even if
    a branch moves meanwhile), and its signer."""
    if revision is None or not isinstance(source, GitSource):
        raise SourceError("verifying signatures needs a commit (--revision): a working tree has no signature")
    commit = str(source.resolve(revision).hexsha)
    signer = verify_commit(str(source.repo.git_dir), commit, signers)
    return commit, str(signer)


def _signed(revision: Revision, signer: str, asked: str | None) -> Revision:
    """The revision with its verified signer, and the ref as the user named it (not the commit
    id it was pinned to for reading)."""
    return dataclasses.replace(revision, signer=signer, ref=asked or "HEAD") if signer else revision


def has_registry_refs(spec: Spec) -> bool:
    return any(v.registry is not None for m in spec.models for v in m.versions.values())


def has_moving_refs(spec: Spec) -> bool:
    """Whether some registry reference names an alias or a stage: what it resolves to can
    change while the commit stays (a pinned version cannot)."""
    return any(v.registry is not None and v.registry.version is None
               for m in spec.models for v in m.versions.values())


def registries_for(spec: Spec, repo: str | Path, *, mlflow_details: Any = None) -> dict[str, Any]:
    """The registries a repo's references need: MLflow at `spec.registries.mlflow.trackingUri`
    (else the standard MLFLOW_TRACKING_URI), its token from the named variable or file (else
    MLFLOW_TRACKING_TOKEN, else MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD as Basic auth; a
    private CA from MLFLOW_TRACKING_SERVER_CERT_PATH); GTO reading the tags of the model repo itself (or of a ref's repo).
    `mlflow_details`: a long-lived caller's agent.registry.DetailsCache, kept across calls."""
    from agent.registry import GtoRegistry, MlflowRegistry, RegistryError

    found: dict[str, Any] = {"gto": GtoRegistry(repo)}
    settings = spec.config.registries.mlflow
    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        token: str | None
        if settings.token_file:
            try:
                token = Path(settings.token_file).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise RegistryError(f"cannot read the MLflow token file {settings.token_file}: {exc.strerror}") from None
        elif settings.token_env:
            token = os.environ.get(settings.token_env) or None
        else:
            token = os.environ.get("MLFLOW_TRACKING_TOKEN") or None
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        basic = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user and not token else None
        found["mlflow"] = MlflowRegistry(uri, token=token, details=mlflow_details, basic=basic,
                                         ca_file=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    return found


def resolutions_key(resolutions: list[Any]) -> tuple[tuple[str, str, str, str], ...]:
    """What registry references resolved to: (model, entry, immutable version, URI) each."""
    return tuple(sorted((r.key, r.version, r.resolved.version, r.resolved.uri) for r in resolutions))


def resolve_registries(desired: Desired, repo: str | Path, registries: dict[str, Any] | None = None, *,
                       unless_same_as: Desired | None = None) -> Desired:
    """`desired` with every registry reference resolved to an immutable version and its artifact
    URI (re-rendered), or itself when it has none. A registry that cannot answer raises
    agent.registry.RegistryError naming the registry and the reference: nothing is planned
    from a half-resolved repo. `registries`: the clients to ask (default: registries_for).
    `unless_same_as`: a previous resolution of the same commit, returned as it is (nothing
    re-rendered) when every reference resolves as it did."""
    if not has_registry_refs(desired.spec):
        return desired
    from agent.resolve import resolve_spec

    if registries is None:
        registries = registries_for(desired.spec, repo)
    spec, resolutions = resolve_spec(desired.spec, registries, {})
    if unless_same_as is not None and resolutions_key(resolutions) == resolutions_key(unless_same_as.resolutions):
        return unless_same_as
    return Desired(spec=spec, objects=_rendered(spec), revision=desired.revision, resolutions=list(resolutions))


def with_traffic(desired: Desired, traffic: dict[str, int]) -> Desired:
    """`desired` with the canary traffic of some models set by their running rollouts (model key
    -> percent), re-rendered; `desired` itself when that changes nothing. While a rollout runs,
    the live split is the rollout's step, not Git's number, and must not be healed back."""
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
    return dataclasses.replace(desired, spec=spec, objects=render(spec))  # the resolutions stay: the audit names them


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


def _labelled(path: str | Path, revision: str | None, label: str, signers: SignerKeys | None = None, *,
              resolve: bool = True) -> Desired:
    try:
        return load_desired(path, revision, signers=signers, resolve=resolve)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.errors, revision=label) from exc


def offline_plans(path: str | Path, base: str, revision: str | None = None, *, signers: SignerKeys | None = None,
                  environment: str | None = None) -> list[tuple[str, Plan]]:
    """offline_plan per environment of the repo at `revision` (each against the same
    environment at `base`; one the base lacks is all new), in the order of the repo's
    environments, or only `environment`. A repo without environments: [("", its plan)]."""
    before = _labelled(path, base, f"the base revision {base!r}", resolve=False)
    after = _labelled(path, revision, f"the revision {revision!r}" if revision else "the working tree", signers,
                      resolve=False)
    if not after.spec.environments:
        if environment is not None:
            spec_environment(after.spec, environment)  # raises: the repo declares none
        before, after = resolve_registries(before, path), resolve_registries(after, path)
        return [("", _plan_of(before, after))]
    names = [environment] if environment is not None else [e.name for e in environment_order(after.spec)]
    plans = []
    for name in names:
        after_env = for_environment(after, name, path)
        known = {e.name for e in before.spec.environments}
        before_env = for_environment(before, name, path) if name in known else dataclasses.replace(
            before, spec=dataclasses.replace(after_env.spec, models=()), objects=[])
        plans.append((name, _plan_of(before_env, after_env)))
    return plans


def environment_order(spec: Spec) -> list[Environment]:
    """The repo's environments in promotion order (an environment after the one it promotes
    from: staging before production), then by name."""
    by_name = {e.name: e for e in spec.environments}

    def depth(env: Environment) -> int:
        seen, at, n = {env.name}, env.promotes_from, 0
        while at is not None and at in by_name and at not in seen:
            seen.add(at)
            n, at = n + 1, by_name[at].promotes_from
        return n

    return sorted(spec.environments, key=lambda e: (depth(e), e.name))


def _plan_of(before: Desired, after: Desired) -> Plan:
    return build_plan(
        diff_objects(after.objects, before.objects),
        base=_offline_info(before.revision),
        revision=_offline_info(after.revision),
        notes=traffic_notes(before.spec, after.spec),
    )


def offline_plan(path: str | Path, base: str, revision: str | None = None, *,
                 signers: SignerKeys | None = None) -> Plan:
    """Desired state at `revision` (default: the working tree) against `base`, no cluster.
    `signers`: `revision` must be signed by a key they allow (the base is what it is compared
    with, and is not verified)."""
    before = _labelled(path, base, f"the base revision {base!r}")
    after = _labelled(path, revision, f"the revision {revision!r}" if revision else "the working tree", signers)
    return build_plan(
        diff_objects(after.objects, before.objects),
        base=_offline_info(before.revision),
        revision=_offline_info(after.revision),
        notes=traffic_notes(before.spec, after.spec),
    )
