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
from agent.render import render
from agent.rollout import traffic_notes
from agent.source import GitError, current_branch, dirty_paths, git, has_ref, read_snapshot
from agent.spec import DEFAULT_LOADER, ModelLookupError, find_model


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
            branch: str | None = None, dry_run: bool = False) -> Outcome:
    """Edit the model's file in the repo at PATH (validated in memory first), optionally on a
    branch and committed. With dry_run nothing is written and git is not touched."""
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
    try:
        model = find_model(spec, name, namespace)
    except ModelLookupError as exc:
        if not exc.namespaces:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise PromoteError(f"no model {name!r}{where} in the repo at {root}") from None
        raise PromoteError(f"model {name!r} is in several namespaces ({', '.join(sorted(exc.namespaces))}):"
                           " name one with -n NAMESPACE") from None
    rel = model.location.file
    before = files[rel].decode("utf-8")
    # a promotion run again (its PR open, say): the tip commit says it was made already
    done = _done_message(root, revision or "HEAD", model.key, change) if commit and not dry_run else None
    try:
        after = edit_model_document(before, document_at(before, model.location.line), change)
    except PromoteError:
        if done is None:
            raise
        after = before  # --stable / --rollback again: no canary left to act on, and none needed
    edited = {**files, rel: after.encode("utf-8")}
    spec_after = DEFAULT_LOADER.load(edited, snapshot.problems)  # ValidationFailed: nothing written
    plan = build_plan(diff_objects(render(spec_after), render(spec)),
                      base={"short": "before"}, revision={"short": "after"}, notes=traffic_notes(spec, spec_after))
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))
    moved = next((m for m in spec_after.models if m.key == model.key), None)
    message = describe(change, model.key, model.stable, model.canary.version if model.canary else None,
                       model.canary.traffic if model.canary else None,
                       moved.canary.traffic if moved is not None and moved.canary is not None else None)
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
