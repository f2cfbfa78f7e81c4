"""Edge: where repo files come from (a directory, a git commit, a mirror of a git remote)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import SourceError
from agent.source._base import Revision, Sealed, Snapshot, Source
from agent.source._directory import DirectorySource
from agent.source._git import GitSource
from agent.source._mirror import Backoff, Credentials, Mirror, PushDenied, redact_url, redact_urls
from agent.source._plumbing import (
    GitAuth,
    GitError,
    PushPlan,
    base_commit,
    branch_file,
    clone_branch,
    commit_on_branch,
    current_branch,
    dirty_paths,
    fetch_branch,
    git,
    git_auth,
    git_head,
    git_toplevel,
    has_ref,
    plan_push,
    push_branch,
    remote_default_branch,
    resolve_remote,
)
from agent.source._run import GitFailed, run_git
from agent.source._signatures import Signer, SignerKeys, verify_commit
from agent.source._sops import decrypt_snapshot
from agent.source._sops_keys import KeyRing, use_age_key_file

__all__ = [
    "Backoff", "Credentials", "DirectorySource", "GitFailed", "GitSource", "Mirror", "Revision", "Signer", "SignerKeys",
    "Snapshot", "Source", "open_source", "read_snapshot", "redact_url", "redact_urls", "run_git", "verify_commit",
]
__all__ += ["KeyRing", "Sealed", "decrypt_snapshot", "use_age_key_file"]
__all__ += ["PushDenied"]
__all__ += [  # the write side's git plumbing (promotion, registry sync, the controller's write-back)
    "GitAuth", "GitError", "PushPlan", "base_commit", "branch_file", "clone_branch", "commit_on_branch",
    "current_branch", "dirty_paths", "fetch_branch", "git", "git_auth", "git_head", "git_toplevel", "has_ref",
    "plan_push", "push_branch", "remote_default_branch", "resolve_remote",
]


def read_snapshot(path: str | Path, revision: str | None = None) -> Snapshot:
    """The repo's files at `revision` (None: the directory as it is), the source closed after;
    SOPS-encrypted files left out unread (`sealed.skipped`): for edits and checks of the other
    files, which never apply anything (load_desired decrypts them)."""
    source = open_source(path, revision)
    try:
        snapshot = source.snapshot(revision)
    finally:
        source.close()
    return decrypt_snapshot(snapshot, keyless="skip", keys=KeyRing())  # no identity: skipped


def open_source(path: str | Path, revision: str | None = None) -> Source:
    """A GitSource when a revision is asked for (PATH may be a subdirectory of the repo),
    otherwise the directory as it is on disk.

    A bare repository (the controller's mirror) has no files on disk: with a revision, PATH
    may be `BARE/sub/dir`, and the part below the bare repository names a directory of the
    commit's tree, whatever exists (or not) under that name inside the git directory."""
    p = Path(path)
    if revision is not None:
        bare = _bare_repo_above(p)
        if bare is not None:
            sub = Path(os.path.abspath(p)).relative_to(bare).as_posix()
            return GitSource(bare, "" if sub == "." else sub)
    if not p.exists():
        raise SourceError(f"{path}: no such file or directory")
    if revision is None:
        return DirectorySource(p)
    if not p.is_dir():  # as without --revision: the repo is a directory
        raise SourceError(f"{path}: not a directory")
    import git

    try:
        top = git.Repo(p, search_parent_directories=True)
    except git.InvalidGitRepositoryError as exc:
        raise SourceError(f"{path}: --revision needs a git repository") from exc
    root = Path(top.working_tree_dir or p)
    top.close()
    sub = p.resolve().relative_to(root.resolve()).as_posix()
    return GitSource(root, "" if sub == "." else sub)


def _bare_repo_above(path: Path) -> Path | None:
    """The bare repository that `path` is (or lies textually under), if any; the search stops
    at the first git directory or work tree, so paths in work trees behave as before."""
    from git.repo.fun import is_git_dir

    here = Path(os.path.abspath(path))
    for candidate in (here, *here.parents):
        if not candidate.is_dir():
            continue
        if is_git_dir(candidate):
            import git

            try:
                repo = git.Repo(candidate, search_parent_directories=False)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                return None
            try:
                return candidate if repo.bare else None
            finally:
                repo.close()
        if os.path.lexists(candidate / ".git"):
            return None
    return None
