"""`agent promote`: edit a Model's stable/canary in a model repo as a person would, locally.

The edit is made on the text of the model's file: ruamel.yaml's round-trip composer gives the
exact position of every key and value, and only the changed values (or the canary entry)
are spliced. Everything else (comments, key order, quoting, flow style, CRLF line endings,
the other documents of the file) stays byte for byte. A round-trip load of the result then
checks that exactly the intended keys changed.

Nothing is written before the whole repo, edit included, passes the normal loader (schema,
references, promotion gates). Git (`--commit`, `--branch`, `--push`) goes through the `git` CLI
with a timeout on every call.

`--push` / `--open-pr`: the branch is pushed with the same runner; a forge token
reaches git only through the environment of one git child, read by a small askpass script
(no secret in it, no secret in argv, the URL or any git config), with `credential.helper`
emptied so no helper stores it. The pull request is opened or updated through `agent.forge`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from agent.errors import AgentError

Action = Literal["canary", "traffic", "stable", "rollback"]
GIT_TIMEOUT = 60.0
_PLAIN_VERSION = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class PromoteError(AgentError):
    """A promotion that cannot be made (unknown model or version, no canary, bad traffic, git)."""


@dataclass(frozen=True)
class Change:
    """canary: start or change the canary (version, traffic); traffic: move an existing
    canary's split; stable: make the canary version stable and drop the canary; rollback:
    drop the canary."""

    action: Action
    version: str | None = None
    traffic: int | None = None


# --- the pure text edit -----------------------------------------------------------------------

def _nodes(text: str) -> list[Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return list(YAML(typ="rt").compose_all(text))
    except YAMLError as exc:
        raise PromoteError(f"cannot read the file as YAML: {exc}") from exc


def _entry(mapping: Any, key: str) -> tuple[Any, Any] | None:
    from ruamel.yaml.nodes import MappingNode

    if not isinstance(mapping, MappingNode):
        return None
    for k, v in mapping.value:
        if getattr(k, "value", None) == key:
            return k, v
    return None


def _last_end(node: Any) -> int:
    """Where the last character of a node's own text ends. A block collection's end mark lies
    past the comments that follow it, so descend to its last leaf instead."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_end(last[1] if isinstance(node, MappingNode) else last)
    return int(node.end_mark.index)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """The index just after the newline ending the line that holds `index` (or the text's end)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def _plain_ok(value: str) -> bool:
    if not _PLAIN_VERSION.fullmatch(value):
        return False
    import yaml

    return bool(yaml.safe_load(value) == value)


def _string(value: str, like: Any | None) -> str:
    """`value` as a YAML string, in the quoting of the scalar it replaces (double quotes when
    that would not read back as the same string)."""
    style = getattr(like, "style", '"') if like is not None else '"'
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_ok(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _model_name(doc: Any) -> str:
    meta = _entry(doc, "metadata")
    name = _entry(meta[1], "name") if meta else None
    return str(name[1].value) if name else "?"


def _model_spec(text: str, doc_index: int) -> tuple[str, str, str, Any, Any]:
    """(byte order mark, text without it, model name, `spec` key node, spec mapping node) of the Model at
    document `doc_index`; positions in the node are offsets into the text without the mark."""
    from ruamel.yaml.nodes import MappingNode

    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    nodes = _nodes(body)
    if not 0 <= doc_index < len(nodes) or not isinstance(nodes[doc_index], MappingNode):
        raise PromoteError(f"document {doc_index} of the file is not a mapping")
    doc = nodes[doc_index]
    name = _model_name(doc)
    spec_entry = _entry(doc, "spec")
    if spec_entry is None or not isinstance(spec_entry[1], MappingNode):
        raise PromoteError(f"model {name!r} has no spec mapping")
    return bom, body, name, spec_entry[0], spec_entry[1]


def _set_entries(body: str, mapping: Any, wanted: Sequence[tuple[str, str, Any]], nl: str) -> list[tuple[int, int, str]]:
    """The edits that give `mapping` (a block or flow mapping node) each (key, YAML text): the
    value replaced where the key is there with another value, else the entry added after the
    mapping's last one, in its style (block: a line at the keys' indentation)."""
    edits: list[tuple[int, int, str]] = []
    missing: list[tuple[str, str]] = []
    for key, text, found in wanted:
        if found is None:
            missing.append((key, text))
        elif str(found[1].value) != _unquoted(text):
            edits.append((int(found[1].start_mark.index), int(found[1].end_mark.index), text))
    if not missing:
        return edits
    entries = mapping.value
    if mapping.flow_style:
        fields = ", ".join(f"{key}: {text}" for key, text in missing)
        if entries:
            at = _last_end(entries[-1][1])
            edits.append((at, at, f", {fields}"))
        else:
            at = int(mapping.start_mark.index) + 1  # just after the {
            edits.append((at, at, fields))
        return edits
    pad = " " * int(entries[0][0].start_mark.column)
    block = "".join(f"{pad}{key}: {text}{nl}" for key, text in missing)
    at = _line_end(body, max(_last_end(entries[-1][1]) - 1, 0))
    if at == len(body) and not body.endswith("\n"):
        block = nl + block[: -len(nl)]
    edits.append((at, at, block))
    return edits


def _unquoted(text: str) -> str:
    """The string a YAML scalar text made by _string reads back as."""
    import yaml

    return str(yaml.safe_load(text))


def edit_model_document(text: str, doc_index: int, change: Change) -> str:
    """The text of a YAML stream with the Model at document `doc_index` changed as `change`
    says; every byte outside the changed values is kept. Raises PromoteError when the change
    does not apply (no canary to move, unknown version, traffic outside 0-100)."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    bom, body, name, spec_key, spec = _model_spec(text, doc_index)
    stable_entry = _entry(spec, "stable")
    if stable_entry is None or not isinstance(stable_entry[1], ScalarNode):
        raise PromoteError(f"model {name!r} has no spec.stable")
    stable_key, stable = stable_entry
    canary_entry = _entry(spec, "canary")
    canary = canary_entry[1] if canary_entry else None
    canary_version = _entry(canary, "version") if canary is not None else None
    canary_traffic = _entry(canary, "traffic") if canary is not None else None
    versions: list[str] = []
    versions_entry = _entry(spec, "versions")
    if versions_entry and isinstance(versions_entry[1], SequenceNode):
        for item in versions_entry[1].value:
            v = _entry(item, "version")
            if v is not None and isinstance(v[1], ScalarNode):
                versions.append(str(v[1].value))

    if change.traffic is not None and not 0 <= change.traffic <= 100:
        raise PromoteError(f"traffic {change.traffic} is outside 0-100 (percent of requests to the canary)")
    if change.action != "canary" and canary is None:
        hint = {"traffic": "--traffic alone moves an existing canary's split; start one with --canary VERSION "
                           "--traffic PCT",
                "stable": "--stable makes the canary version stable",
                "rollback": "--rollback drops the canary"}[change.action]
        raise PromoteError(f"model {name!r} has no canary: {hint}")
    if change.action == "canary":
        assert change.version is not None
        if change.version not in versions:
            raise PromoteError(f"model {name!r} has no version {change.version!r} (versions: "
                               f"{', '.join(versions) or 'none'})")
        if change.version == str(stable.value):
            raise PromoteError(f"version {change.version!r} of model {name!r} is already the stable version")
        rollout = _entry(spec, "rollout")
        if change.traffic is None and (rollout is None or not isinstance(rollout[1], MappingNode)):
            raise PromoteError(f"--canary {change.version} needs --traffic PCT (the canary's share of requests, "
                               f"0-100): no spec.rollout decides the traffic of model {name!r}")
    if change.action in ("canary", "traffic") and canary is not None and not isinstance(canary, MappingNode):
        raise PromoteError(f"model {name!r}: spec.canary is not a mapping")
    if canary_traffic is not None and change.traffic is not None and not isinstance(canary_traffic[1], ScalarNode):
        raise PromoteError(f"model {name!r}: spec.canary.traffic is not a number")

    edits: list[tuple[int, int, str]] = []
    nl = "\r\n" if "\r\n" in body else "\n"

    def remove_canary() -> None:
        assert canary_entry is not None
        key, value = canary_entry
        if spec.flow_style:
            entries = spec.value
            i = next(n for n, (k, _) in enumerate(entries) if k is key)
            if i > 0:
                edits.append((_last_end(entries[i - 1][1]), _last_end(value), ""))
            elif i + 1 < len(entries):
                edits.append((int(key.start_mark.index), int(entries[i + 1][0].start_mark.index), ""))
            else:
                edits.append((int(key.start_mark.index), _last_end(value), ""))
            return
        start = _line_start(body, int(key.start_mark.index))
        if body[start:key.start_mark.index].strip():  # not alone on its line: cut the entry only
            start = int(key.start_mark.index)
        edits.append((start, _line_end(body, max(_last_end(value) - 1, 0)), ""))

    if change.action in ("canary", "traffic"):
        wanted: list[tuple[str, str, Any]] = []  # (key, YAML text, the scalar it replaces when there is one)
        if change.action == "canary":
            assert change.version is not None
            like = canary_version[1] if canary_version is not None else stable
            wanted.append(("version", _string(change.version, like), canary_version))
        if change.traffic is not None:
            wanted.append(("traffic", str(change.traffic), canary_traffic))
        if canary is not None:
            edits += _set_entries(body, canary, wanted, nl)
        elif spec.flow_style:
            at = int(stable.end_mark.index)
            fields = ", ".join(f"{key}: {text}" for key, text, _ in wanted)
            edits.append((at, at, f", canary: {{{fields}}}"))
        else:
            column = int(stable_key.start_mark.column)
            step = column - int(spec_key.start_mark.column)
            inner = " " * (column + (step if step > 0 else 2))
            block = f"{' ' * column}canary:{nl}" + "".join(f"{inner}{key}: {text}{nl}" for key, text, _ in wanted)
            at = _line_end(body, int(stable.end_mark.index))
            if at == len(body) and not body.endswith("\n"):
                block = nl + block[: -len(nl)]
            edits.append((at, at, block))
    elif change.action == "stable":
        assert canary_version is not None
        edits.append((int(stable.start_mark.index), int(stable.end_mark.index),
                      _string(str(canary_version[1].value), stable)))
        remove_canary()
    else:
        remove_canary()

    out = body
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    _check(body, out, doc_index, change, str(canary_version[1].value) if canary_version else None)
    return bom + out


def _plain(node: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _load_all(text: str) -> list[Any]:
    from ruamel.yaml import YAML

    return [_plain(d) for d in YAML(typ="rt").load_all(text)]


def _check(before: str, after: str, doc_index: int, change: Change, old_canary: str | None) -> None:
    """The edited text, read back, differs from the original in the intended keys only."""
    old, new = _load_all(before), _load_all(after)
    spec = dict(old[doc_index]["spec"])
    if change.action in ("canary", "traffic"):
        canary = dict(spec.get("canary") or {})
        if change.action == "canary":
            canary["version"] = change.version
        if change.traffic is not None:
            canary["traffic"] = change.traffic
        spec["canary"] = canary
    else:
        if change.action == "stable":
            spec["stable"] = old_canary
        spec.pop("canary", None)
    old[doc_index] = {**old[doc_index], "spec": spec}
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
        raise AgentError("internal error: the edited file does not read back as intended (a bug: please report it)")


def document_at(text: str, line: int) -> int:
    """The index of the document whose root starts at 1-based `line` (a spec Location)."""
    from ruamel.yaml.nodes import MappingNode

    body = text[1:] if text.startswith("\ufeff") else text
    for index, node in enumerate(_nodes(body)):
        if isinstance(node, MappingNode) and int(node.start_mark.line) + 1 == line:
            return index
    raise PromoteError(f"no document starts at line {line}")


# --- the command --------------------------------------------------------------------------------

@dataclass
class Outcome:
    model: str
    file: Path
    before: str
    after: str
    diff: str
    message: str
    plan: Any
    commit: str | None = None
    branch: str | None = None


def describe(change: Change, key: str, stable: str, canary: str | None, canary_traffic: int | None,
             rollout_traffic: int | None = None) -> str:
    """The commit message: a summary line, then trailers (Model, From-Version, To-Version, Traffic).
    From/To: the version the requests move from and to; Traffic: To-Version's share after it
    (`rollout_traffic`, where spec.rollout starts it, for a canary started with no traffic)."""
    source: str | None
    target: str | None
    traffic: int | None
    if change.action == "canary" and change.traffic is None:
        summary = f"canary {change.version}, its traffic decided by spec.rollout"
        source, target, traffic = stable, change.version, rollout_traffic
    elif change.action == "canary":
        summary = f"canary {change.version} at {change.traffic}%"
        source, target, traffic = stable, change.version, change.traffic
    elif change.action == "traffic":
        summary = f"canary {canary} at {change.traffic}% (was {canary_traffic}%)"
        source, target, traffic = stable, canary, change.traffic
    elif change.action == "stable":
        summary = f"{canary} stable (was {stable}), canary removed"
        source, target, traffic = stable, canary, 100
    else:
        summary = f"canary {canary} removed, {stable} stays stable"
        source, target, traffic = canary, stable, 100
    verb = "roll back" if change.action == "rollback" else "promote"
    return (f"{verb} {key}: {summary}\n\nModel: {key}\nAction: {change.action}\nFrom-Version: {source}\n"
            f"To-Version: {target}\n" + (f"Traffic: {traffic}\n" if traffic is not None else ""))


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None, secrets: Sequence[tuple[str, str]] = ()) -> str:
    """git through the source edge's runner (timeout, process group killed and reaped). `env`:
    extra variables for this one child; `secrets`: masked in any error message."""
    from agent.source import GitFailed, run_git

    try:
        return run_git(["git", *args], env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
                       timeout=GIT_TIMEOUT, cwd=cwd, secrets=secrets)
    except FileNotFoundError as exc:
        raise PromoteError("git is not installed") from exc
    except GitFailed as exc:
        rest = list(args)
        while rest[:1] == ["-c"]:  # -c NAME=VALUE options before the subcommand
            rest = rest[2:]
        verb = " ".join(rest[:1] + [a for a in rest[1:2] if not a.startswith("-")])
        if exc.timed_out:
            raise PromoteError(f"git {verb} took longer than {GIT_TIMEOUT:g}s") from exc
        detail = [line for line in exc.stderr.strip().splitlines() if line.strip()]
        fatal = [line for line in detail if line.startswith(("fatal:", "error:", "remote:", " ! ["))]
        raise PromoteError(f"git {verb} failed: {'; '.join((fatal or detail or ['no error message'])[:2])}") from exc


def trailers(message: str) -> dict[str, str]:
    """The `Key: value` trailers of a commit message's last paragraph."""
    last = message.strip().split("\n\n")[-1]
    found: dict[str, str] = {}
    for line in last.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            found[key] = value.strip()
    return found


def _done_message(root: Path, revision: str, key: str, change: Change) -> str | None:
    """The message of `revision`'s commit when that commit made this very change (its trailers
    name the model, the action, the traffic and the version), else None."""
    try:
        message = _git(root, "log", "-1", "--format=%B", revision, "--")
    except PromoteError:
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


def _dirty(cwd: Path, *paths: str) -> list[str]:
    out = _git(cwd, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def promote(path: str | Path, name: str, namespace: str | None, change: Change, *, commit: bool = False,
            branch: str | None = None, dry_run: bool = False) -> Outcome:
    """Edit the model's file in the repo at PATH (validated in memory first), optionally on a
    branch and committed. With dry_run nothing is written and git is not touched."""
    from agent.plan import build_plan, diff_objects
    from agent.render import render
    from agent.rollout import traffic_notes
    from agent.source import read_snapshot
    from agent.spec import DEFAULT_LOADER

    root = Path(path)
    commit = commit or branch is not None
    revision = None
    if commit and not dry_run:
        _git(root, "rev-parse", "--show-toplevel")  # a git work tree, or a clear error
        if branch is not None:
            dirty = _dirty(root, ":/")
            if dirty:
                raise PromoteError(f"the work tree has uncommitted changes ({', '.join(dirty[:5])}): commit or "
                                   f"stash them before --branch {branch}")
            _git(root, "check-ref-format", "--branch", branch)
            current = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
            try:
                _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
                exists = True
            except PromoteError:
                exists = False
            if exists and current != branch:
                revision = branch  # edit the branch's version of the file
    snapshot = read_snapshot(root, revision)
    files = dict(snapshot.files)
    spec = DEFAULT_LOADER.load(files, snapshot.problems)
    found = [m for m in spec.models if m.name == name and (namespace is None or m.namespace == namespace)]
    if not found:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise PromoteError(f"no model {name!r}{where} in the repo at {root}")
    if len(found) > 1:
        raise PromoteError(f"model {name!r} is in several namespaces ({', '.join(sorted(m.namespace for m in found))}):"
                           " name one with -n NAMESPACE")
    model = found[0]
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
        dirty = _dirty(root, str(target.resolve()))
        if dirty:
            raise PromoteError(f"{rel} has uncommitted changes: commit or stash them first")
    if branch is not None:
        current = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
        if current != branch:
            if revision is not None:
                _git(root, "switch", "--quiet", branch)
            else:
                _git(root, "switch", "--quiet", "-c", branch)
    if target.read_bytes() != files[rel]:
        raise PromoteError(f"{rel} changed while the promotion was prepared; nothing written")
    _write(target, after.encode("utf-8"))
    if commit:
        try:
            _git(root, "add", "--", str(target.resolve()))
            _git(root, "commit", "--quiet", "-m", message, "--", str(target.resolve()))
        except PromoteError as exc:  # put the file back as it was: no half-done promotion
            _write(target, files[rel])
            _git(root, "reset", "--quiet", "--", str(target.resolve()))
            raise PromoteError(f"{exc}; {rel} is left as it was") from exc
        outcome.commit = _git(root, "rev-parse", "HEAD").strip()
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


# --- push and pull request ------------------------------------------------------------------------

PR_BODY_LIMIT = 60_000  # GitHub refuses comments and PR bodies over 65,536 characters
_TOKEN_ENV = "MODELOPS_GIT_TOKEN"
_USER_ENV = "MODELOPS_GIT_USERNAME"
_ASKPASS_SCRIPT = f"""#!/bin/sh
# Written by the modelops agent: answers git's credential prompts from its environment.
case "$1" in
  Username*) printf '%s\\n' "${_USER_ENV}" ;;
  *) printf '%s\\n' "${_TOKEN_ENV}" ;;
esac
"""
_USERNAMES = {"gitlab": "oauth2"}  # GitHub and Gitea take any user name with a token


class Forge(Protocol):
    """What `agent promote --open-pr` and `agent pr-comment` use of `agent.forge.Forge`."""

    def find_pull(self, head: str, base: str) -> Any: ...

    def open_pull(self, head: str, base: str, title: str, body: str) -> Any: ...

    def upsert_comment(self, number: int, marker: str, body: str) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ForgeOptions:
    """How to reach the forge's API: --forge, --api-url, --token-env/--token-file, --ca-file."""

    kind: str | None = None
    api_url: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None


@dataclass(frozen=True)
class GitAuth:
    """How one git child authenticates: the token (https remotes only) and a CA bundle."""

    token: str | None = None
    username: str = "x-access-token"
    ca_file: Path | None = None
    ssh_command: str | None = None  # GIT_SSH_COMMAND for an ssh remote (the controller's key and known_hosts)

    def __repr__(self) -> str:  # never the token
        return f"GitAuth(token={'***' if self.token else None}, username={self.username!r}, ca_file={self.ca_file})"


@dataclass(frozen=True)
class PushPlan:
    """Where a promotion goes: the remote (as given and its URL), the branch pushed, the PR's base."""

    remote: str
    url: str
    head: str
    base: str


@dataclass
class PullOutcome:
    number: int
    url: str
    created: bool
    title: str
    body: str


def connect_forge(remote_url: str, options: ForgeOptions) -> tuple[Forge, str, str]:
    """The forge of `remote_url` (its kind detected from the URL unless options.kind), the token
    read from its file or variable (default: the kind's GITHUB_TOKEN / GITLAB_TOKEN /
    GITEA_TOKEN), and the forge's kind. No network call yet; no token: an error naming where
    it was looked for, never a token."""
    from agent.forge import open_forge, read_token, repo_ref

    ref = repo_ref(remote_url, kind=options.kind, api_url=options.api_url)
    token = read_token(env=options.token_env, file=options.token_file, kind=ref.kind)
    client = open_forge(ref, token, ca_file=options.ca_file)
    return client, token, ref.kind


def read_git_token(options: ForgeOptions) -> str:
    """The token for `--push` alone, read from --token-file or --token-env."""
    from agent.forge import read_token

    return read_token(env=options.token_env, file=options.token_file, kind=options.kind)


def _is_https(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


@contextlib.contextmanager
def git_auth(auth: GitAuth, url: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """(`-c` options, environment) for one git child talking to `url`. A token reaches git only
    through that child's environment, answered by an askpass script holding no secret; the
    credential helpers are emptied so none stores it. Never in argv, the URL or a config file."""
    config: list[str] = []
    ca: dict[str, str] = {}
    if auth.ca_file is not None:  # the variable too: an inherited GIT_SSL_CAINFO would win over the config
        path = str(Path(auth.ca_file).resolve())
        config += ["-c", f"http.sslCAInfo={path}"]
        ca = {"GIT_SSL_CAINFO": path}
    if auth.ssh_command and not _is_https(url):
        ca["GIT_SSH_COMMAND"] = auth.ssh_command
    if not auth.token or not _is_https(url):
        yield config, ca
        return
    with tempfile.TemporaryDirectory(prefix="modelops-askpass-") as directory:
        script = Path(directory) / "askpass.sh"
        script.write_text(_ASKPASS_SCRIPT)
        script.chmod(stat.S_IRWXU)
        yield [*config, "-c", "credential.helper="], {
            **ca, "GIT_ASKPASS": str(script), _TOKEN_ENV: auth.token, _USER_ENV: auth.username}


def git_toplevel(path: Path) -> Path:
    return Path(_git(path, "rev-parse", "--show-toplevel").strip())


def resolve_remote(root: Path, remote: str) -> str:
    """The URL of remote `remote` (a name of `git remote`), or `remote` itself (a URL or path)."""
    names = _git(root, "remote").split()
    if remote in names:
        return _git(root, "remote", "get-url", "--push", remote).strip()
    if remote.startswith("-") or not remote:
        raise PromoteError(f"{remote!r} is not a remote")
    return remote


def shown_url(url: str) -> str:
    from agent.source import redact_url

    return redact_url(url)


def remote_default_branch(root: Path, remote: str, auth: GitAuth, url: str) -> str:
    """The remote's default branch (`git ls-remote --symref REMOTE HEAD`), else main."""
    with git_auth(auth, url) as (config, env):
        out = _git(root, *config, "ls-remote", "--symref", remote, "HEAD", env=env, secrets=_secrets(auth))
    for line in out.splitlines():
        if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
            return line[len("ref: refs/heads/"):-len("\tHEAD")]
    return "main"


def _secrets(auth: GitAuth) -> list[tuple[str, str]]:
    """The token as git sends it (Basic `username:token`): masked in every encoding."""
    return [(auth.username, auth.token)] if auth.token else []


def plan_push(root: Path, remote: str, branch: str | None, base: str | None, auth: GitAuth) -> PushPlan:
    """Where --push goes, worked out before anything is written: the remote must exist, the
    branch pushed is --branch or the current one, which must not be the PR's base."""
    _git(root, "rev-parse", "--show-toplevel")
    url = resolve_remote(root, remote)
    if branch is not None:
        _git(root, "check-ref-format", "--branch", branch)
    head = branch or _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if head == "HEAD":
        raise PromoteError("HEAD is detached: name the branch to push with --branch NAME")
    if base is None:
        base = remote_default_branch(root, remote, auth, url)
    _git(root, "check-ref-format", "--branch", base)
    if head == base:
        raise PromoteError(f"the branch to push, {head}, is the PR's base ({base}) on {shown_url(url)}: name a new "
                           "branch with --branch NAME")
    return PushPlan(remote=remote, url=url, head=head, base=base)


def push(root: Path, target: PushPlan, auth: GitAuth) -> None:
    """git push the branch to the remote (a no-op when the remote has it already)."""
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{target.head}")
    except PromoteError:
        raise PromoteError(f"no branch {target.head} to push: nothing was committed on it") from None
    with git_auth(auth, target.url) as (config, env):
        _git(root, *config, "push", "--quiet", "--porcelain", target.remote,
             f"refs/heads/{target.head}:refs/heads/{target.head}", env=env, secrets=_secrets(auth))


def _base_commit(root: Path, target: PushPlan, auth: GitAuth) -> str | None:
    """The commit the remote's base branch is at, fetched when it is not here yet; None when
    the remote has no such branch."""
    with git_auth(auth, target.url) as (config, env):
        out = _git(root, *config, "ls-remote", target.remote, f"refs/heads/{target.base}", env=env,
                   secrets=_secrets(auth))
        sha = out.split()[0] if out.split() else None
        if sha is None:
            return None
        try:
            _git(root, "cat-file", "-e", f"{sha}^{{commit}}")
        except PromoteError:
            _git(root, *config, "fetch", "--quiet", "--no-tags", target.remote, f"refs/heads/{target.base}",
                 env=env, secrets=_secrets(auth))
    return sha


def pull_body(plan: Any, message: str) -> str:
    """The PR description: the Markdown plan (as `agent diff -o markdown` prints it), then the
    commit's trailers."""
    from agent.output import markdown

    found = trailers(message)
    lines = [markdown(plan).rstrip("\n"), ""]
    if found:
        lines += ["```text", *(f"{k}: {v}" for k, v in found.items()), "```", ""]
    lines.append("<sub>Opened by `agent promote --open-pr`.</sub>")
    return truncate("\n".join(lines) + "\n")


def relabel(plan: Any, base: str, head: str) -> Any:
    """The plan with its two sides named by the PR's branches (in its title and each diff)."""
    import dataclasses

    def side(info: dict[str, str], name: str) -> dict[str, str]:
        kept = {k: v for k, v in info.items() if k != "ref"}
        return {**kept, "short": name, "commit": kept.get("commit") or name}

    return dataclasses.replace(plan, base=side(plan.base, base), revision=side(plan.revision, head))


def branch_plan(path: str | Path, root: Path, target: PushPlan, auth: GitAuth, fallback: Any) -> Any:
    """The plan of the whole PR: the remote's base against the pushed branch, as a PR check
    would show it; the plan of this change alone when the base cannot be read."""
    from agent.pipeline import offline_plan

    try:
        base = _base_commit(root, target, auth)
        if base is not None:
            return relabel(offline_plan(path, base, f"refs/heads/{target.head}"), target.base, target.head)
    except AgentError:
        pass
    return relabel(fallback, target.base, target.head)


def open_pull(forge: Forge, target: PushPlan, title: str, body: str) -> PullOutcome:
    """Open the PR head -> base, or update the open one (its title and body)."""
    existing = forge.find_pull(target.head, target.base)
    pr = forge.open_pull(target.head, target.base, title, body)
    created = bool(getattr(pr, "created", False)) and existing is None
    return PullOutcome(number=int(pr.number), url=str(pr.url), created=created, title=title, body=body)


def truncate(body: str, limit: int = PR_BODY_LIMIT) -> str:
    """`body` cut to at most `limit` characters at a line end, an open code fence and open
    <details> closed, with a note saying so."""
    if len(body) <= limit:
        return body
    note = (f"\n\n**Truncated:** this text has {len(body):,} characters; only the first part is shown (GitHub "
            "allows 65,536). `agent diff` prints all of it.\n")
    room = limit - len(note) - 200
    cut = body[:room]
    cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else cut
    fence: str | None = None
    for line in cut.splitlines():
        stripped = line.strip()
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if not match:
            continue
        if fence is None:
            fence = match.group(1)
        elif stripped.startswith(fence) and not stripped[len(fence):].strip(fence[0]).strip():
            fence = None
    closing = ""
    if fence is not None:
        closing += ("" if cut.endswith("\n") else "\n") + fence + "\n"
    open_details = cut.count("<details>") - cut.count("</details>")
    closing += "</details>\n" * max(open_details, 0)
    return cut + closing + note


def forge_options(kind: str | None, api_url: str | None, token_env: str | None, token_file: str | None,
                  ca_file: str | None) -> ForgeOptions:
    return ForgeOptions(kind=kind, api_url=api_url, token_env=token_env,
                        token_file=Path(token_file) if token_file else None,
                        ca_file=Path(ca_file) if ca_file else None)


_DEFAULT_HOSTS = {"github": "github.com", "gitlab": "gitlab.com"}


def repo_url(repo: str, kind: str | None, api_url: str | None) -> str:
    """An https URL for OWNER/NAME on the forge (github.com, gitlab.com, or the --api-url's host)."""
    from urllib.parse import urlsplit

    parts = repo.strip("/").split("/")
    if len(parts) < 2 or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) for p in parts):
        raise PromoteError(f"--repo {repo!r} is not OWNER/NAME")
    if api_url:
        split = urlsplit(api_url)
        if not split.scheme or not split.netloc:
            raise PromoteError(f"--api-url {api_url!r} is not a URL")
        host = f"{split.scheme}://{split.netloc}"
        if split.netloc == "api.github.com":
            host = "https://github.com"
    elif kind in _DEFAULT_HOSTS:
        host = f"https://{_DEFAULT_HOSTS[kind]}"
    else:
        raise PromoteError(f"--repo with --forge {kind or '(none)'} needs --api-url URL (or --forge github|gitlab)")
    return f"{host}/{'/'.join(parts)}.git"


def post_comment(number: int, body: str, marker: str, remote_url: str, options: ForgeOptions) -> tuple[bool, str]:
    """Keep one comment (per marker) on PR `number` with `body`: (created, its URL)."""
    if number <= 0:
        raise PromoteError(f"{number} is not a pull request number")
    if not marker or not re.fullmatch(r"[A-Za-z0-9_.:/-]+", marker):
        raise PromoteError(f"--marker {marker!r}: letters, digits and _.:/- only")
    forge, _, _ = connect_forge(remote_url, options)
    try:
        comment = forge.upsert_comment(number, marker, truncate(body))
    finally:
        forge.close()
    return bool(comment.created), str(comment.url)


def username_for(kind: str | None) -> str:
    return _USERNAMES.get(kind or "", "x-access-token")


# --- the controller's write-back: a promotion made on a fresh clone of the remote ------------------

@dataclass(frozen=True)
class Published:
    """What publish_remote did: the commit pushed (None: Git already said so) and the PR."""

    commit: str | None
    pull_request: PullOutcome | None = None


def clone_branch(url: str, branch: str, work: Path, auth: GitAuth,
                 author: tuple[str, str] = ("modelops-agent", "modelops-agent@modelops.invalid")) -> None:
    """A fresh single-branch clone of url@branch at `work` (which must not exist), committing as
    `author`: where the controller makes the commits it pushes."""
    with git_auth(auth, url) as (config, env):
        _git(work.parent, *config, "clone", "--quiet", "--no-tags", "--single-branch", "--branch", branch, url,
             str(work), env=env, secrets=_secrets(auth))
    for key, value in (("user.name", author[0]), ("user.email", author[1]), ("commit.gpgsign", "false")):
        _git(work, "config", key, value)


def publish_remote(url: str, base: str, subdir: str, name: str, namespace: str, change: Change, *, auth: GitAuth,
                   work: Path, head: str | None = None, forge: Forge | None = None,
                   author: tuple[str, str] = ("modelops-agent", "modelops-agent@modelops.invalid")) -> Published:
    """Make `change` on a fresh clone of url@base and push it: straight to `base` (head None: a
    commit on the branch the controller follows, so Git stays the truth about what serves), or
    to branch `head` with a PR into base when a forge is given. `work` must not exist yet; the
    caller removes it. The same validation as `agent promote`: an edit that fails it is refused."""
    clone_branch(url, base, work, auth, author=author)
    outcome = promote(work / subdir if subdir else work, name, namespace, change, commit=True, branch=head)
    if outcome.after == outcome.before:
        return Published(commit=None)
    target = PushPlan(remote="origin", url=url, head=head or base, base=base)
    push(work, target, auth)
    pr = None
    if forge is not None and head is not None:
        title = outcome.message.splitlines()[0]
        pr = open_pull(forge, target, title, pull_body(relabel(outcome.plan, base, head), outcome.message))
    return Published(commit=outcome.commit, pull_request=pr)


# --- a new version entry (`agent registry sync`) --------------------------------------------------

@dataclass(frozen=True)
class NewVersion:
    """A version entry to add to a Model's spec.versions: `version` named in registry `kind`
    (mlflow or gto) as `name` at `pinned` (an immutable version), with `repo` for a GTO ref."""

    version: str
    kind: str
    name: str
    pinned: str
    repo: str | None = None


def _like(value: str, node: Any | None) -> str:
    """`value` quoted like `node`, or plain when there is no such node and plain reads back."""
    if node is None:
        return value if _plain_ok(value) else json.dumps(value, ensure_ascii=False)
    return _string(value, node)


def _flow_ref(entry: NewVersion, quote: Any) -> str:
    fields = [f"name: {_like(entry.name, quote('name'))}", f"version: {_like(entry.pinned, quote('version'))}"]
    if entry.repo is not None:
        fields.append(f"repo: {_like(entry.repo, quote('repo'))}")
    return f"{{{', '.join(fields)}}}"


def add_version_entry(text: str, doc_index: int, entry: NewVersion) -> str:
    """The text of a YAML stream with `entry` appended to spec.versions of the Model at document
    `doc_index`, every other byte kept: a new list item in the style of the existing ones (block
    or flow, their indentation and quoting, the registry reference block or flow like the
    stable version's, CRLF kept). Raises PromoteError when the model already has a version of
    that name or its spec.versions is not a non-empty list."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    bom, body, name, spec_key, spec = _model_spec(text, doc_index)
    versions_entry = _entry(spec, "versions")
    if versions_entry is None or not isinstance(versions_entry[1], SequenceNode) or not versions_entry[1].value:
        raise PromoteError(f"model {name!r}: spec.versions is not a non-empty list")
    items = versions_entry[1].value
    like_version: Any = None
    like_ref: Any = None  # the registry mapping (mlflow: ...) of the stable entry, else of any entry
    registry_node: Any = None
    stable = _entry(spec, "stable")
    stable_value = str(stable[1].value) if stable and isinstance(stable[1], ScalarNode) else None
    for item in items:
        v = _entry(item, "version")
        if v is None or not isinstance(v[1], ScalarNode):
            continue
        like_version = like_version or v[1]
        if str(v[1].value) == entry.version:
            raise PromoteError(f"model {name!r} already has a version {entry.version!r}")
        reg = _entry(item, "registry")
        if reg is not None and isinstance(reg[1], MappingNode):
            ref = _entry(reg[1], entry.kind)
            if ref is not None and (registry_node is None or str(v[1].value) == stable_value):
                registry_node, like_ref = reg[1], ref[1]

    def quote(key: str) -> Any:
        found = _entry(like_ref, key) if like_ref is not None else None
        return found[1] if found is not None else None

    version = _string(entry.version, like_version)
    flow_ref = _flow_ref(entry, quote)
    registry_flow = registry_node is not None and registry_node.flow_style
    ref_flow = like_ref is not None and isinstance(like_ref, MappingNode) and like_ref.flow_style
    nl = "\r\n" if "\r\n" in body else "\n"
    last = items[-1]
    if versions_entry[1].flow_style or getattr(last, "flow_style", False):
        item_text = f"{{version: {version}, registry: {{{entry.kind}: {flow_ref}}}}}"
    else:
        item_text = ""
    if versions_entry[1].flow_style:
        at = _last_end(last)
        edits = [(at, at, f", {item_text}")]
    else:
        item_start = int(last.start_mark.index)
        line_start = _line_start(body, item_start)
        prefix = body[line_start:item_start]
        dash = prefix.rfind("-")
        if dash < 0 or prefix[:dash].strip():
            raise PromoteError(f"model {name!r}: cannot tell the layout of spec.versions' items")
        dash_indent = " " * dash
        key_col = int(last.start_mark.column)
        stable_key = stable[0] if stable else None
        step = (int(stable_key.start_mark.column) - int(spec_key.start_mark.column)) if stable_key is not None else 2
        step = step if step > 0 else 2
        pad = " " * key_col
        gap = prefix[dash + 1:]  # the spaces after the dash
        if item_text:
            block = f"{dash_indent}-{gap}{item_text}{nl}"
        elif registry_flow:
            block = (f"{dash_indent}-{gap}version: {version}{nl}"
                     f"{pad}registry: {{{entry.kind}: {flow_ref}}}{nl}")
        elif ref_flow:
            block = (f"{dash_indent}-{gap}version: {version}{nl}{pad}registry:{nl}"
                     f"{pad}{' ' * step}{entry.kind}: {flow_ref}{nl}")
        else:
            inner = pad + " " * (2 * step)
            lines = [f"{dash_indent}-{gap}version: {version}", f"{pad}registry:", f"{pad}{' ' * step}{entry.kind}:",
                     f"{inner}name: {_like(entry.name, quote('name'))}",
                     f"{inner}version: {_like(entry.pinned, quote('version'))}"]
            if entry.repo is not None:
                lines.append(f"{inner}repo: {_like(entry.repo, quote('repo'))}")
            block = nl.join(lines) + nl
        at = _line_end(body, max(_last_end(last) - 1, 0))
        if at == len(body) and not body.endswith("\n"):
            block = nl + block[: -len(nl)]
        edits = [(at, at, block)]
    out = body
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    old, new_docs = _load_all(body), _load_all(out)
    ref_doc: dict[str, str] = {"name": entry.name, "version": entry.pinned}
    if entry.repo is not None:
        ref_doc["repo"] = entry.repo
    wanted = dict(old[doc_index]["spec"])
    wanted["versions"] = [*wanted["versions"], {"version": entry.version, "registry": {entry.kind: ref_doc}}]
    old[doc_index] = {**old[doc_index], "spec": wanted}
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(new_docs, sort_keys=True, default=str):
        raise AgentError("internal error: the file with the new version entry does not read back as intended "
                         "(a bug: please report it)")
    return bom + out


# --- a commit on a branch, the work tree untouched (`agent registry sync`) ---------------------------

def branch_file(root: Path, branch: str, repo_path: str) -> bytes | None:
    """The content of `repo_path` on local branch `branch`; None when there is no such branch
    (or file)."""
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    except PromoteError:
        return None
    from agent.source import GitFailed, run_git

    try:
        return run_git(["git", "cat-file", "blob", f"refs/heads/{branch}:{repo_path}"],
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=GIT_TIMEOUT, cwd=root).encode("utf-8")
    except GitFailed:
        return None


def fetch_branch(root: Path, target: PushPlan, auth: GitAuth) -> bool:
    """Fetch the remote's branch target.head into the local branch of that name when the remote
    has it and the local repo has not: True when the local branch exists afterwards."""
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{target.head}")
        return True
    except PromoteError:
        pass
    with git_auth(auth, target.url) as (config, env):
        out = _git(root, *config, "ls-remote", target.remote, f"refs/heads/{target.head}", env=env,
                   secrets=_secrets(auth))
        if not out.split():
            return False
        _git(root, *config, "fetch", "--quiet", "--no-tags", target.remote,
             f"refs/heads/{target.head}:refs/heads/{target.head}", env=env, secrets=_secrets(auth))
    return True


def commit_on_branch(root: Path, branch: str, parent: str, repo_path: str, content: bytes, message: str) -> str:
    """A new commit of `parent`'s tree with `repo_path` replaced by `content`, as the new local
    branch `branch` (refused when it exists): made with a temporary index, so the work tree, the
    index and the checked-out branch are untouched. Returns the commit."""
    _git(root, "check-ref-format", "--branch", branch)
    with tempfile.TemporaryDirectory(prefix="modelops-commit-") as directory:
        data = Path(directory) / "content"
        data.write_bytes(content)
        blob = _git(root, "hash-object", "-w", "--no-filters", str(data)).strip()
        listed = _git(root, "ls-tree", parent, "--", repo_path).split()
        mode = listed[0] if listed else "100644"
        env = {"GIT_INDEX_FILE": str(Path(directory) / "index")}
        _git(root, "read-tree", parent, env=env)
        _git(root, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{repo_path}", env=env)
        tree = _git(root, "write-tree", env=env).strip()
    commit = _git(root, "commit-tree", tree, "-p", parent, "-m", message).strip()
    _git(root, "update-ref", f"refs/heads/{branch}", commit, "")  # "": only if the branch does not exist
    return commit


def git_head(root: Path) -> str:
    """The commit HEAD is at."""
    return _git(root, "rev-parse", "--verify", "HEAD^{commit}").strip()
