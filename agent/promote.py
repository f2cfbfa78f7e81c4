"""`agent promote`: edit a Model's stable/canary in a model repo as a person would, locally.

The edit is made on the text of the model's file: ruamel.yaml's round-trip composer gives the
exact position of every key and value, and only the changed values (or the canary entry)
are spliced. Everything else (comments, key order, quoting, flow style, CRLF line endings,
the other documents of the file) stays byte for byte. A round-trip load of the result then
checks that exactly the intended keys changed.

Nothing is written before the whole repo, edit included, passes the normal loader (schema,
references, promotion gates). Git (`--commit`, `--branch`) goes through the `git` CLI with a
timeout on every call.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


def edit_model_document(text: str, doc_index: int, change: Change) -> str:
    """The text of a YAML stream with the Model at document `doc_index` changed as `change`
    says; every byte outside the changed values is kept. Raises PromoteError when the change
    does not apply (no canary to move, unknown version, traffic outside 0-100)."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

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
    spec_key, spec = spec_entry
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
        assert change.version is not None and change.traffic is not None
        if change.version not in versions:
            raise PromoteError(f"model {name!r} has no version {change.version!r} (versions: "
                               f"{', '.join(versions) or 'none'})")
        if change.version == str(stable.value):
            raise PromoteError(f"version {change.version!r} of model {name!r} is already the stable version")
    if change.action == "traffic" and (canary_traffic is None or not isinstance(canary_traffic[1], ScalarNode)):
        raise PromoteError(f"model {name!r}: spec.canary has no traffic value to change")

    edits: list[tuple[int, int, str]] = []

    def replace(node: Any, new: str) -> None:
        edits.append((int(node.start_mark.index), int(node.end_mark.index), new))

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
        traffic = str(change.traffic)
        if canary is not None and isinstance(canary, MappingNode):
            if change.action == "canary" and canary_version is not None and canary_version[1].value != change.version:
                assert change.version is not None
                replace(canary_version[1], _string(change.version, canary_version[1]))
            if canary_traffic is not None and canary_traffic[1].value != traffic:
                replace(canary_traffic[1], traffic)
        elif canary is None:
            assert change.version is not None
            version = _string(change.version, stable)
            if spec.flow_style:
                at = int(stable.end_mark.index)
                edits.append((at, at, f", canary: {{version: {version}, traffic: {traffic}}}"))
            else:
                nl = "\r\n" if "\r\n" in body else "\n"
                column = int(stable_key.start_mark.column)
                step = column - int(spec_key.start_mark.column)
                inner = " " * (column + (step if step > 0 else 2))
                indent = " " * column
                block = f"{indent}canary:{nl}{inner}version: {version}{nl}{inner}traffic: {traffic}{nl}"
                at = _line_end(body, int(stable.end_mark.index))
                if at == len(body) and not body.endswith("\n"):
                    block = nl + block[: -len(nl)]
                edits.append((at, at, block))
        else:
            raise PromoteError(f"model {name!r}: spec.canary is not a mapping")
    elif change.action == "stable":
        assert canary_version is not None
        replace(stable, _string(str(canary_version[1].value), stable))
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


def describe(change: Change, key: str, stable: str, canary: str | None, canary_traffic: int | None) -> str:
    """The commit message: a summary line, then trailers (Model, From-Version, To-Version, Traffic).
    From/To: the version the requests move from and to; Traffic: To-Version's share after it."""
    source: str | None
    target: str | None
    traffic: int | None
    if change.action == "canary":
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
            f"To-Version: {target}\nTraffic: {traffic}\n")


def _git(cwd: Path, *args: str) -> str:
    """git through the source edge's runner (timeout, process group killed and reaped)."""
    from agent.source import GitFailed, run_git

    try:
        return run_git(["git", *args], env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=GIT_TIMEOUT, cwd=cwd)
    except FileNotFoundError as exc:
        raise PromoteError("git is not installed") from exc
    except GitFailed as exc:
        if exc.timed_out:
            raise PromoteError(f"git {args[0]} took longer than {GIT_TIMEOUT:g}s") from exc
        detail = exc.stderr.strip().splitlines()
        raise PromoteError(f"git {' '.join(args[:2])} failed: {detail[-1] if detail else 'no error message'}") from exc


def _dirty(cwd: Path, *paths: str) -> list[str]:
    out = _git(cwd, "status", "--porcelain", "--untracked-files=no", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def promote(path: str | Path, name: str, namespace: str | None, change: Change, *, commit: bool = False,
            branch: str | None = None, dry_run: bool = False) -> Outcome:
    """Edit the model's file in the repo at PATH (validated in memory first), optionally on a
    branch and committed. With dry_run nothing is written and git is not touched."""
    from agent.plan import build_plan, diff_objects
    from agent.render import render
    from agent.source import open_source
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
    source = open_source(root, revision)
    try:
        snapshot = source.snapshot(revision)
    finally:
        source.close()
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
    after = edit_model_document(before, document_at(before, model.location.line), change)
    edited = {**files, rel: after.encode("utf-8")}
    spec_after = DEFAULT_LOADER.load(edited, snapshot.problems)  # ValidationFailed: nothing written
    plan = build_plan(diff_objects(render(spec_after), render(spec)),
                      base={"short": "before"}, revision={"short": "after"})
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{rel}", f"b/{rel}"))
    message = describe(change, model.key, model.stable, model.canary.version if model.canary else None,
                       model.canary.traffic if model.canary else None)
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
