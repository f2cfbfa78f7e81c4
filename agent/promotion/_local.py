"""`agent promote`'s local half: the model's file edited in the repo at PATH (the whole repo,
edit included, validated in memory first), optionally on a branch and committed through the
source edge's git plumbing. Nothing is written before the edit passes the normal loader
(schema, references, promotion gates)."""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.plan import Plan, build_plan, diff_objects
from agent.promotion._change import Change, PromoteError, describe, trailers
from agent.promotion._edit import document_at, edit_model_document
from agent.promotion._overlay import CanaryEdit, edit_overlay
from agent.render import render
from agent.rollout import traffic_notes
from agent.source import GitError, current_branch, dirty_paths, git, has_ref, read_snapshot
from agent.spec import DEFAULT_LOADER, Model, ModelLookupError, Spec, find_model, for_environment
from agent.spec import environment as environment_of


@dataclass
class Outcome:
    model: str
    file: Path
    before: str
    after: str
    diff: str
    message: str
    plan: Plan
    commit: str | None = None
    branch: str | None = None


def _done_message(root: Path, revision: str, key: str, change: Change) -> str | None:
    """The message of `revision`'s commit when that commit made this very change (its trailers
    name the model, the action, the traffic and the version), else None."""
    try:
        message = git(root, "log", "-1", "--format=%B", revision, "--")
    except GitError:
        return None
    found = trailers(message)
    wanted = {"Model": key, "Action": change.action}
    if change.traffic is not None:
        wanted["Traffic"] = str(change.traffic)
    if change.version is not None:
        wanted["To-Version"] = change.version
    if any(found.get(k) != v for k, v in wanted.items()):
        return None
    return message.strip() + "\n"


def _lookup(spec: Spec, name: str, namespace: str | None, root: Path) -> Model:
    try:
        return find_model(spec, name, namespace)
    except ModelLookupError as exc:
        if not exc.namespaces:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise PromoteError(f"no model {name!r}{where} in the repo at {root}") from None
        raise PromoteError(f"model {name!r} is in several namespaces ({', '.join(sorted(exc.namespaces))}):"
                           " name one with -n NAMESPACE") from None


def _edit_environment(spec: Spec, environment: str, model: Model, text: str, change: Change) -> str:
    """The Environment's file with its overlay of `model` (the overlaid one) changed."""
    env = environment_of(spec, environment)
    base = spec.model(model.namespace, model.name)
    canary = model.canary
    if change.action == "stable":
        version = change.version or (canary.version if canary else None)
        if version is None:
            raise PromoteError(f"model {model.key} has no canary in environment {environment!r}: "
                               "--stable makes the canary version stable")
        if version not in model.versions:
            raise PromoteError(f"model {model.key} has no version {version!r} (versions: {', '.join(model.versions)})")
        drop = canary is not None and canary.version == version
        stable: str | None = version
    elif change.action == "rollback":
        if canary is None:
            raise PromoteError(f"model {model.key} has no canary in environment {environment!r}: --rollback "
                               "drops the canary")
        drop, stable = True, None
    else:
        raise PromoteError(f"environment {environment!r}: only --stable and --rollback edit an environment's overlay")
    edit: CanaryEdit = "keep" if not drop else ("null" if base is not None and base.canary is not None else "drop")
    names = [model.name, model.key]
    return edit_overlay(text, document_at(text, env.location.line), names, stable=stable, canary=edit)


def _edit_branch(root: Path, branch: str) -> str | None:
    """Checks before --branch: a clean work tree, a valid name; the branch whose file to edit
    when it exists and is not the current one."""
    dirty = dirty_paths(root, ":/")
    if dirty:
        raise PromoteError(f"the work tree has uncommitted changes ({', '.join(dirty[:5])}): commit or "
                           f"stash them before --branch {branch}")
    git(root, "check-ref-format", "--branch", branch)
    current = current_branch(root)
    if has_ref(root, f"refs/heads/{branch}") and current != branch:
        return branch  # edit the branch's version of the file
    return None


def promote(path: str | Path, name: str, namespace: str | None, change: Change, *, commit: bool = False,
            branch: str | None = None, dry_run: bool = False, environment: str | None = None,
            message: str | None = None) -> Outcome:
    """Edit the model's file in the repo at PATH (validated in memory first), optionally on a
    branch and committed. With dry_run nothing is written and git is not touched.
    `environment`: edit that Environment's overlay of the model instead (agent.promotion.
    edit_overlay): "stable" makes `change.version` (else the environment's canary version)
    stable there, "rollback" drops the environment's canary. `message`: the commit message
    (default: describe's, with an Environment trailer)."""
    root = Path(path)
    commit = commit or branch is not None
    revision = None
    if commit and not dry_run:
        git(root, "rev-parse", "--show-toplevel")  # a git work tree, or a clear error
        if branch is not None:
            revision = _edit_branch(root, branch)
    snapshot = read_snapshot(root, revision)
    files = dict(snapshot.files)
    spec = DEFAULT_LOADER.load(files, snapshot.problems)
    model = _lookup(spec if environment is None else for_environment(spec, environment), name, namespace, root)
    rel = model.location.file if environment is None else environment_of(spec, environment).location.file
    before = files[rel].decode("utf-8")
    # a promotion run again (its PR open, say): the tip commit says it was made already
    done = _done_message(root, revision or "HEAD", model.key, change) if commit and not dry_run else None
    try:
        if environment is None:
            after = edit_model_document(before, document_at(before, model.location.line), change)
        else:
            after = _edit_environment(spec, environment, model, before, change)
    except PromoteError:
        if done is None:
            raise
        after = before  # --stable / --rollback again: no canary left to act on, and none needed
    edited = {**files, rel: after.encode("utf-8")}
    spec_after = DEFAULT_LOADER.load(edited, snapshot.problems)  # ValidationFailed: nothing written
    seen_before, seen_after = spec, spec_after
    if environment is not None:
        seen_before, seen_after = for_environment(spec, environment), for_environment(spec_after, environment)
    plan = build_plan(diff_objects(render(seen_after), render(seen_before)), base={"short": "before"},
                      revision={"short": "after"}, notes=traffic_notes(seen_before, seen_after))
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))
    moved = next((m for m in seen_after.models if m.key == model.key), None)
    if message is None:
        target_version = change.version if change.action == "stable" and change.version else None
        message = describe(change, model.key, model.stable,
                           target_version or (model.canary.version if model.canary else None),
                           model.canary.traffic if model.canary else None,
                           moved.canary.traffic if moved is not None and moved.canary is not None else None)
        if environment is not None:
            message += f"Environment: {environment}\n"
    if after == before and done is not None:
        message = done
    target = root / rel
    outcome = Outcome(model=model.key, file=target, before=before, after=after, diff=diff, message=message,
                      plan=plan, branch=branch)
    if dry_run or after == before:  # already so: nothing to write or commit
        return outcome
    if commit:
        dirty = dirty_paths(root, str(target.resolve()))
        if dirty:
            raise PromoteError(f"{rel} has uncommitted changes: commit or stash them first")
    if branch is not None and current_branch(root) != branch:
        if revision is not None:
            git(root, "switch", "--quiet", branch)
        else:
            git(root, "switch", "--quiet", "-c", branch)
    if target.read_bytes() != files[rel]:
        raise PromoteError(f"{rel} changed while the promotion was prepared; nothing written")
    _write(target, after.encode("utf-8"))
    if commit:
        try:
            git(root, "add", "--", str(target.resolve()))
            git(root, "commit", "--quiet", "-m", message, "--", str(target.resolve()))
        except GitError as exc:  # put the file back as it was: no half-done promotion
            _write(target, files[rel])
            git(root, "reset", "--quiet", "--", str(target.resolve()))
            raise GitError(f"{exc}; {rel} is left as it was") from exc
        outcome.commit = git(root, "rev-parse", "HEAD").strip()
    return outcome


def _write(target: Path, data: bytes) -> None:
    """Replace the file's content atomically, keeping its mode."""
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
