"""GTO (Git Tag Ops) as a model registry: versions and stages are annotated Git tags.

GTO's tag grammar (iterative/gto `gto/constants.py`), for an artifact `name` (`dir:name` is
written `dir=name` in tags):

- `name@v1.2.0` registers a version (`name@v1.2.0#N` with GTO's event counter);
  `name@v1.2.0!` (`!#N`) deregisters it;
- `name#prod#N` assigns the stage prod to the version registered at the same commit, the
  largest N of a stage winning; the older form `name#prod` has no counter (it loses to any
  counted tag of the stage); `name#prod!#N` unassigns the stage;
- `name@deprecated#N` deprecates the artifact (when it is its latest event).

Only `git` is needed (no `gto` package): the tags of a local repo are read with
`git for-each-ref`, those of a URL with `git ls-remote --tags`. The artifact's URI comes from
`artifacts.yaml` (GTO < 0.3) or `dvc.yaml`'s `artifacts:` (GTO >= 0.3) at the version's
commit, when the repo is local and it names one; otherwise it is `<repo>@<commit>`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from agent.errors import plain_reason
from agent.registry._answer import check_answer, check_version
from agent.registry._base import RegistryError, ResolvedVersion
from agent.source import GitFailed, redact_url, redact_urls, run_git

__all__ = ["GtoRegistry"]

# name (or dir=name), then @version / #stage, an optional "!" (cancel), an optional #counter
_TAG = re.compile(r"^(?P<artifact>[^@#!]+)(?:@(?P<version>[^@#!]+)|#(?P<stage>[^@#!]+))(?P<cancel>!?)(?:#(?P<counter>[0-9]+))?$")
_SEMVER = re.compile(r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_SCP = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")  # git@host:owner/repo


@dataclass(frozen=True)
class _Event:
    tag: str
    commit: str
    version: str | None
    stage: str | None
    cancel: bool
    counter: int  # 0 for the counter-less forms


def is_url(repo: str) -> bool:
    """A remote (scheme://, or scp-like user@host:path), not a local path."""
    return "://" in repo or bool(_SCP.match(repo))


def _semver_key(version: str) -> tuple[int, int, int, int, str]:
    m = _SEMVER.match(version)
    if m is None:
        return (-1, -1, -1, 0, version)
    # a pre-release sorts before its release
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if m.group(4) else 1, m.group(4) or "")


class GtoRegistry:
    """Resolves GTO references by reading Git tags. `repo` is the default repo (the model
    repo itself: a work tree, a bare mirror or a URL); a reference's own `repo:` wins, a
    relative path being taken from the default repo's directory."""

    def __init__(self, repo: str | Path, *, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        self.repo = str(repo)
        self.timeout = timeout
        base = dict(os.environ if env is None else env)
        base.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        self._env = base

    def __repr__(self) -> str:
        return f"GtoRegistry({redact_url(self.repo)!r})"

    def resolve(self, name: str, *, version: str | None = None, stage: str | None = None,
                repo: str | None = None) -> ResolvedVersion:
        """The version `name@version`, or the one stage `stage` is assigned to now."""
        if (version is None) == (stage is None):
            raise RegistryError(f"GTO {name}: give exactly one of version or stage")
        target = self._target(repo)
        shown = redact_url(target)
        artifact = name.replace(":", "=")
        events = [e for tag, commit in self._tags(target, shown).items() if (e := _event(tag, commit, artifact))]
        ref = f"{name}@{version}" if version is not None else f"{name}#{stage}"
        _check_not_deprecated(events, artifact, f"GTO {shown}: {ref}")
        wanted = None
        if version is not None:
            wanted = version if version.startswith("v") else f"v{version}"
            found = _registered(events, wanted, f"GTO {shown}: {ref}")
        else:
            found = _assigned(events, str(stage), f"GTO {shown}: {ref}")
        where = f"GTO {shown}: {ref}"
        check_version(str(found.version), where, pinned=wanted)  # before it is shown or used
        resolved = ResolvedVersion(
            registry="gto", name=name, version=str(found.version), uri=self._uri(target, name, found.commit),
            run_id=None, digest=None, alias=stage, metrics={},
        )
        return check_answer(resolved, where, pinned=wanted)

    def _target(self, repo: str | None) -> str:
        if repo is None:
            return self.repo
        if is_url(repo) or os.path.isabs(repo) or is_url(self.repo):
            return repo
        return os.path.normpath(os.path.join(self.repo, repo))

    def _git(self, args: list[str], shown: str, what: str, target: str = "") -> str:
        try:
            return run_git(["git", *args], env=self._env, timeout=self.timeout, secrets=_userinfo(target))
        except GitFailed as exc:
            reason = "timed out" if exc.timed_out else (exc.stderr.strip().splitlines() or ["failed"])[-1]
            raise RegistryError(f"GTO {shown}: {what}: {reason}") from exc
        except OSError as exc:
            raise RegistryError(f"GTO {shown}: {what}: cannot run git: {plain_reason(exc)}") from exc

    def _tags(self, target: str, shown: str) -> dict[str, str]:
        """Tag name -> the commit it points at (annotated tags peeled)."""
        tags: dict[str, str] = {}
        if is_url(target):
            out = self._git(["ls-remote", "--tags", "--", target], shown, "listing tags", target)
            for line in out.splitlines():
                sha, _, ref = line.partition("\t")
                if not ref.startswith("refs/tags/"):
                    continue
                tag = ref.removeprefix("refs/tags/")
                if tag.endswith("^{}"):
                    tags[tag[:-3]] = sha  # the peeled commit wins over the tag object
                else:
                    tags.setdefault(tag, sha)
            return tags
        if not os.path.isdir(target):
            raise RegistryError(f"GTO {shown}: no such repository")
        out = self._git(["-C", target, "for-each-ref", "--format=%(refname)%09%(objectname)%09%(*objectname)",
                         "refs/tags"], shown, "listing tags")
        for line in out.splitlines():
            ref, sha, peeled = [*line.split("\t"), "", ""][:3]
            tags[ref.removeprefix("refs/tags/")] = peeled or sha
        return tags

    def _uri(self, target: str, name: str, commit: str) -> str:
        """The artifact's `uri` (or a `path` with a scheme) from its annotation at `commit`;
        otherwise `<repo>@<commit>` (with `:<path>` for a repo-relative path)."""
        fallback = f"{redact_urls(target)}@{commit}"  # no user info at all: it is served
        if is_url(target):
            return fallback
        directory, _, short = name.rpartition(":")
        entry = self._annotation(target, directory, short, commit)
        if entry is None:
            return fallback
        uri, path = entry.get("uri"), entry.get("path")
        if isinstance(uri, str) and uri:
            return uri
        if isinstance(path, str) and path:
            return path if "://" in path else f"{fallback}:{_posix_join(directory, path)}"
        return fallback

    def _annotation(self, target: str, directory: str, name: str, commit: str) -> dict[str, Any] | None:
        for filename, section in (("artifacts.yaml", None), ("dvc.yaml", "artifacts")):
            path = _posix_join(directory, filename)
            try:
                text = run_git(["git", "-C", target, "show", f"{commit}:{path}"], env=self._env, timeout=self.timeout)
            except (GitFailed, OSError):
                continue  # no such file at that commit
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise RegistryError(f"GTO {target}: {path} at {commit[:12]} is not valid YAML: {exc}") from exc
            if section is not None and isinstance(data, dict):
                data = data.get(section)
            entry = data.get(name) if isinstance(data, dict) else None
            if isinstance(entry, dict):
                return entry
        return None


def _userinfo(url: str) -> list[tuple[str, str]]:
    """A password (or token) in the URL's user info, masked in git's errors in every encoding."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or not parts.password:
        return []
    return [(unquote(parts.username or ""), unquote(parts.password)), (parts.username or "", parts.password)]


def _posix_join(directory: str, path: str) -> str:
    return f"{directory.rstrip('/')}/{path}" if directory else path


def _event(tag: str, commit: str, artifact: str) -> _Event | None:
    m = _TAG.match(tag)
    if m is None or m.group("artifact") != artifact:
        return None
    return _Event(tag=tag, commit=commit, version=m.group("version"), stage=m.group("stage"),
                  cancel=bool(m.group("cancel")), counter=int(m.group("counter") or 0))


def _check_not_deprecated(events: list[_Event], artifact: str, what: str) -> None:
    deprecations = [e for e in events if e.version == "deprecated"]
    if not deprecations:
        return
    latest = max(deprecations, key=lambda e: e.counter)
    if all(e.counter < latest.counter for e in events if e.version != "deprecated"):
        raise RegistryError(f"{what}: the artifact {artifact} is deprecated (tag {latest.tag})")


def _registrations(events: list[_Event]) -> dict[str, _Event]:
    """Registered versions (not deregistered) -> their registration."""
    out: dict[str, _Event] = {}
    gone: set[str] = set()
    for e in events:
        if e.version is None or _SEMVER.match(e.version) is None:
            continue
        if e.cancel:
            gone.add(e.version)
        else:
            out[e.version] = e
    return {v: e for v, e in out.items() if v not in gone}


def _registered(events: list[_Event], version: str, what: str) -> _Event:
    versions = _registrations(events)
    found = versions.get(version)
    if found is None:
        known = ", ".join(sorted(versions, key=_semver_key)) or "none"
        raise RegistryError(f"{what}: no registered version {version} (registered: {known})")
    return found


def _assigned(events: list[_Event], stage: str, what: str) -> _Event:
    """The registration of the version the stage's latest assignment names."""
    assignments = [e for e in events if e.stage == stage]
    if not assignments:
        stages = ", ".join(sorted({e.stage for e in events if e.stage})) or "none"
        raise RegistryError(f"{what}: no version was ever assigned to stage {stage!r} (stages: {stages})")
    latest = max(assignments, key=lambda e: e.counter)
    if latest.cancel:
        raise RegistryError(f"{what}: stage {stage!r} is unassigned (tag {latest.tag})")
    at_commit = [e for e in _registrations(events).values() if e.commit == latest.commit]
    if not at_commit:
        raise RegistryError(f"{what}: the assignment tag {latest.tag} points at commit {latest.commit[:12]}, "
                            "where no version is registered")
    return max(at_commit, key=lambda e: _semver_key(str(e.version)))
