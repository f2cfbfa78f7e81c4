"""`agent registry sync`'s edit: a version entry appended to a Model's spec.versions in the
style of the existing ones, every other byte kept. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from agent.errors import AgentError
from agent.promotion._change import PromoteError
from agent.promotion._yaml_text import (
    find_entry,
    last_end,
    line_end,
    line_start,
    load_all,
    model_spec,
    plain_ok,
    splice,
    yaml_string,
)


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
        return value if plain_ok(value) else json.dumps(value, ensure_ascii=False)
    return yaml_string(value, node)


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
    bom, body, name, spec_key, spec = model_spec(text, doc_index)
    versions_entry = find_entry(spec, "versions")
    if versions_entry is None or not isinstance(versions_entry[1], SequenceNode) or not versions_entry[1].value:
        raise PromoteError(f"model {name!r}: spec.versions is not a non-empty list")
    items = versions_entry[1].value
    like_version: Any = None
    like_ref: Any = None  # the registry mapping (mlflow: ...) of the stable entry, else of any entry
    registry_node: Any = None
    stable = find_entry(spec, "stable")
    stable_value = str(stable[1].value) if stable and isinstance(stable[1], ScalarNode) else None
    for item in items:
        v = find_entry(item, "version")
        if v is None or not isinstance(v[1], ScalarNode):
            continue
        like_version = like_version or v[1]
        if str(v[1].value) == entry.version:
            raise PromoteError(f"model {name!r} already has a version {entry.version!r}")
        reg = find_entry(item, "registry")
        if reg is not None and isinstance(reg[1], MappingNode):
            ref = find_entry(reg[1], entry.kind)
            if ref is not None and (registry_node is None or str(v[1].value) == stable_value):
                registry_node, like_ref = reg[1], ref[1]

    def quote(key: str) -> Any:
        found = find_entry(like_ref, key) if like_ref is not None else None
        return found[1] if found is not None else None

    version = yaml_string(entry.version, like_version)
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
        at = last_end(last)
        edits = [(at, at, f", {item_text}")]
    else:
        item_start = int(last.start_mark.index)
        first = line_start(body, item_start)
        prefix = body[first:item_start]
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
        at = line_end(body, max(last_end(last) - 1, 0))
        if at == len(body) and not body.endswith("\n"):
            block = nl + block[: -len(nl)]
        edits = [(at, at, block)]
    out = splice(body, edits)
    old, new_docs = load_all(body), load_all(out)
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
