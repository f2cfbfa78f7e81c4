"""Byte-preserving YAML text edits: ruamel.yaml's round-trip composer gives the exact position
of every key and value, so only the changed values (or an added entry) are spliced and every
other byte (comments, key order, quoting, flow style, CRLF, the other documents) stays. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, SequenceNode

from agent.promotion._change import PromoteError

_PLAIN_VERSION = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def compose(text: str) -> list[Any]:
    try:
        return list(YAML(typ="rt").compose_all(text))
    except YAMLError as exc:
        raise PromoteError(f"cannot read the file as YAML: {exc}") from exc


def find_entry(mapping: Any, key: str) -> tuple[Any, Any] | None:
    if not isinstance(mapping, MappingNode):
        return None
    for k, v in mapping.value:
        if getattr(k, "value", None) == key:
            return k, v
    return None


def last_end(node: Any) -> int:
    """Where the last character of a node's own text ends. A block collection's end mark lies
    past the comments that follow it, so descend to its last leaf instead."""
    if isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return last_end(last[1] if isinstance(node, MappingNode) else last)
    return int(node.end_mark.index)


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def line_end(text: str, index: int) -> int:
    """The index just after the newline ending the line that holds `index` (or the text's end)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def plain_ok(value: str) -> bool:
    if not _PLAIN_VERSION.fullmatch(value):
        return False
    return bool(yaml.safe_load(value) == value)


def yaml_string(value: str, like: Any | None) -> str:
    """`value` as a YAML string, in the quoting of the scalar it replaces (double quotes when
    that would not read back as the same string)."""
    style = getattr(like, "style", '"') if like is not None else '"'
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and plain_ok(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _model_name(doc: Any) -> str:
    meta = find_entry(doc, "metadata")
    name = find_entry(meta[1], "name") if meta else None
    return str(name[1].value) if name else "?"


def model_spec(text: str, doc_index: int) -> tuple[str, str, str, Any, Any]:
    """(byte order mark, text without it, model name, `spec` key node, spec mapping node) of the Model at
    document `doc_index`; positions in the node are offsets into the text without the mark."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    nodes = compose(body)
    if not 0 <= doc_index < len(nodes) or not isinstance(nodes[doc_index], MappingNode):
        raise PromoteError(f"document {doc_index} of the file is not a mapping")
    doc = nodes[doc_index]
    name = _model_name(doc)
    spec_entry = find_entry(doc, "spec")
    if spec_entry is None or not isinstance(spec_entry[1], MappingNode):
        raise PromoteError(f"model {name!r} has no spec mapping")
    return bom, body, name, spec_entry[0], spec_entry[1]


def set_entries(body: str, mapping: Any, wanted: Sequence[tuple[str, str, Any]], nl: str) -> list[tuple[int, int, str]]:
    """The edits that give `mapping` (a block or flow mapping node) each (key, YAML text): the
    value replaced where the key is there with another value, else the entry added after the
    mapping's last one, in its style (block: a line at the keys' indentation)."""
    edits: list[tuple[int, int, str]] = []
    missing: list[tuple[str, str]] = []
    for key, text, found in wanted:
        if found is None:
            missing.append((key, text))
        elif str(found[1].value) != unquoted(text):
            edits.append((int(found[1].start_mark.index), int(found[1].end_mark.index), text))
    if not missing:
        return edits
    entries = mapping.value
    if mapping.flow_style:
        fields = ", ".join(f"{key}: {text}" for key, text in missing)
        if entries:
            at = last_end(entries[-1][1])
            edits.append((at, at, f", {fields}"))
        else:
            at = int(mapping.start_mark.index) + 1  # just after the {
            edits.append((at, at, fields))
        return edits
    pad = " " * int(entries[0][0].start_mark.column)
    block = "".join(f"{pad}{key}: {text}{nl}" for key, text in missing)
    at = line_end(body, max(last_end(entries[-1][1]) - 1, 0))
    if at == len(body) and not body.endswith("\n"):
        block = nl + block[: -len(nl)]
    edits.append((at, at, block))
    return edits


def remove_entry(body: str, mapping: Any, key: Any, value: Any) -> tuple[int, int, str]:
    """The edit that removes the entry (key, value) of `mapping` (block: its lines; flow: the
    entry and one comma)."""
    if mapping.flow_style:
        entries = mapping.value
        i = next(n for n, (k, _) in enumerate(entries) if k is key)
        if i > 0:
            return last_end(entries[i - 1][1]), last_end(value), ""
        if i + 1 < len(entries):
            return int(key.start_mark.index), int(entries[i + 1][0].start_mark.index), ""
        return int(key.start_mark.index), last_end(value), ""
    start = line_start(body, int(key.start_mark.index))
    if body[start:key.start_mark.index].strip():  # not alone on its line: cut the entry only
        start = int(key.start_mark.index)
    return start, line_end(body, max(last_end(value) - 1, 0)), ""


def unquoted(text: str) -> str:
    """The string a YAML scalar text made by yaml_string reads back as."""
    return str(yaml.safe_load(text))


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def load_all(text: str) -> list[Any]:
    return [_plain(d) for d in YAML(typ="rt").load_all(text)]


def splice(body: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """`body` with each (start, end, new text) edit made, the last first so offsets hold."""
    out = body
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    return out
