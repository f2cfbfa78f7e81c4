"""Safe YAML parsing with locations.

PyYAML's C parser builds the node tree (fast); we construct plain data ourselves so we can
reject what a GitOps repo must never contain (duplicate keys, aliases, non-string keys)
and keep each document's node tree to find the line of any field path when reporting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from agent.errors import SpecError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: larger files are refused, not parsed
MAX_NODES_PER_DOCUMENT = 200_000
MAX_DEPTH = 100  # nesting of mappings and sequences in one document
INT64 = (-(1 << 63), (1 << 63) - 1)  # what Kubernetes (and JSON consumers) can hold

_INT = "tag:yaml.org,2002:int"
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# scalar tags that construct plain JSON-like values; anything else (!!binary, !!python/...,
# !!set, local tags such as !Ref) has no meaning for Kubernetes and is refused
_SCALAR_TAGS = frozenset({
    _STR, _INT, _TIMESTAMP, "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
})
_SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass
class Document:
    """One YAML document: its data, where it starts, and its file's text.

    The node tree is only needed to report a field's line, which is rare, so it is not kept:
    holding every document's tree (hundreds of thousands of objects for a large repo) makes the
    garbage collector the slowest part of a load. It is composed again on first use.
    """

    path: str
    index: int
    data: Any
    line: int
    text: str
    schema_errors: list[SpecError] | None = None  # cached: a document is validated once
    _node: yaml.Node | None = None

    def _tree(self) -> yaml.Node:
        if self._node is None:
            for index, node in enumerate(_compose_all(self.text)):
                if index == self.index:
                    self._node = node
                    break
            assert self._node is not None, "the document parsed before"
        return self._node

    def line_of(self, field_path: Sequence[str | int]) -> int:
        """The 1-based line of the deepest node on field_path that exists."""
        node = self._tree()
        for depth, key in enumerate(field_path):
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == key:
                        # a nested block starts on the line after its key: point at the key
                        last = depth == len(field_path) - 1
                        block = isinstance(v, (yaml.MappingNode, yaml.SequenceNode))
                        child = k if last and block else v
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                child = node.value[key]
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1

    def plain_scalar(self, field_path: Sequence[str | int]) -> str | None:
        """The text of the value at field_path as written, when it is a plain (unquoted)
        scalar; None otherwise. For messages such as `1 is a number (quote it: "1")`."""
        node: yaml.Node | None = self._tree()
        for key in field_path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                node = node.value[key]
            else:
                return None
        if isinstance(node, yaml.ScalarNode) and not node.style:
            return str(node.value)
        return None

    def error(self, field_path: Sequence[str | int], message: str) -> SpecError:
        return SpecError(self.path, self.line_of(field_path), dotted(field_path), message)


def dotted(field_path: Sequence[str | int]) -> str:
    out = ""
    for key in field_path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out


class _Constructor(yaml.constructor.SafeConstructor):
    """Builds plain data from nodes; refuses aliases and duplicate keys."""

    def __init__(self, path: str, text: str, index: int = 0) -> None:
        super().__init__()
        self.path = path
        self.text = text
        self.index = index
        self.errors: list[SpecError] = []
        self.value_errors: list[SpecError] = []  # values no consumer can hold: the document is dropped
        self.seen: set[int] = set()
        self.count = 0

    def build(self, node: yaml.Node, path: tuple[str | int, ...] = ()) -> Any:
        self.count += 1
        if self.count > MAX_NODES_PER_DOCUMENT:
            too_big = f"document has more than {MAX_NODES_PER_DOCUMENT} nodes"
            raise _Abort(self._err(node, path, too_big))
        if len(path) > MAX_DEPTH:
            raise _Abort(self._err(node, path[:3], f"document nests more than {MAX_DEPTH} levels deep"))
        # every node (scalars too) is visited once; meeting one again means an alias (*name)
        if id(node) in self.seen:
            raise _Abort(self._alias_error(node, path))
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise _Abort(self._err(node, path, f"unsupported YAML tag {_short(node.tag)!r} (a mapping must be plain)"))
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise _Abort(self._err(key_node, path, "YAML merge keys (<<) are not allowed"))
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Abort(self._err(key_node, path, "mapping keys must be plain strings"))
                if id(key_node) in self.seen:
                    raise _Abort(self._alias_error(key_node, path))
                self.seen.add(id(key_node))
                key = str(key_node.value)  # as written: `1: x` and `true: x` have the keys "1" and "true"
                if key in out:
                    duplicate = f"duplicate key {key!r} in the same mapping"
                    self.errors.append(self._err(key_node, (*path, key), duplicate))
                    continue
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _Abort(self._err(node, path, f"unsupported YAML tag {_short(node.tag)!r} (a sequence must be plain)"))
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        if node.tag in (_STR, _TIMESTAMP):  # like Kubernetes' YAML: a date stays a string
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise _Abort(self._err(node, path, f"unsupported YAML tag {_short(node.tag)!r}"))
        try:
            value = self.construct_object(node, deep=True)
        except Exception:  # PyYAML raises ValueError, KeyError, IndexError, ...
            # an explicit tag on a value it cannot read: `!!int abc`, `!!bool maybe`, `!!int ''`
            raise _Abort(self._err(node, path, f"{node.value!r} is not a valid {_short(node.tag)}")) from None
        finally:
            self.constructed_objects.clear()
        if not isinstance(value, _SCALAR_TYPES):
            raise _Abort(self._err(node, path, f"unsupported YAML tag {_short(node.tag)!r}"))
        if isinstance(value, float) and not math.isfinite(value):
            # NaN compares false with every bound, so it would pass any range check or gate
            self.value_errors.append(self._err(node, path, f"{node.value} is not a finite number"))
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            self.value_errors.append(self._err(node, path, "integer out of range (at most 64 bits: -2^63 to 2^63-1)"))
        return value

    def _alias_error(self, node: yaml.Node, path: Sequence[str | int]) -> SpecError:
        """Locate the first alias of this document (rare error path, so a second parse is fine).

        Nodes are built in document order, so the first alias met is the first in the text.
        """
        line = int(node.start_mark.line) + 1
        document = -1
        for event in yaml.parse(self.text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.DocumentStartEvent):
                document += 1
            elif isinstance(event, yaml.AliasEvent) and document == self.index:
                if event.start_mark is not None:
                    line = int(event.start_mark.line) + 1
                break
        message = "YAML aliases (*name) are not allowed: write the value out"
        return SpecError(self.path, line, dotted(path), message)

    def _err(self, node: yaml.Node, path: Sequence[str | int], message: str) -> SpecError:
        return SpecError(self.path, int(node.start_mark.line) + 1, dotted(path), message)


class _Abort(Exception):
    def __init__(self, error: SpecError) -> None:
        self.error = error


def parse(path: str, content: bytes) -> tuple[list[Document], list[SpecError]]:
    """Parse every document of one file; problems are returned, never raised."""
    if len(content) > MAX_FILE_BYTES:
        return [], [SpecError(path, 1, "", f"file is {len(content)} bytes, over the limit of {MAX_FILE_BYTES}")]
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        return [], [SpecError(path, line, "", f"not valid UTF-8 (byte 0x{content[exc.start]:02x} at offset {exc.start})")]
    docs: list[Document] = []
    errors: list[SpecError] = []
    try:
        for index, node in enumerate(_compose_all(text)):
            if node is None:
                continue
            ctor = _Constructor(path, text, index)
            try:
                data = ctor.build(node)
            except _Abort as abort:
                errors.append(abort.error)
                continue
            except yaml.constructor.ConstructorError as exc:
                errors.append(_mark_error(path, exc))
                continue
            errors.extend(ctor.errors)
            if ctor.value_errors:
                errors.extend(ctor.value_errors)
                continue
            if data is None:
                continue
            docs.append(Document(path, index, data, int(node.start_mark.line) + 1, text))
    except yaml.MarkedYAMLError as exc:
        errors.append(_mark_error(path, exc))
    except yaml.reader.ReaderError as exc:
        # characters YAML forbids (NUL and other control characters); position is a byte offset
        line = content.count(b"\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"invalid YAML: unacceptable character #x{char:04x}: {exc.reason}"
        errors.append(SpecError(path, line, "", message))
    return docs, errors


class _Loader(yaml.CSafeLoader):
    """The C loader, reading exponent floats without a dot (1e-7) as numbers, as YAML 1.2 and
    Kubernetes do (YAML 1.1 would make them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _short(tag: str) -> str:
    """`tag:yaml.org,2002:binary` -> `!!binary`, as it is written in YAML."""
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _compose_all(text: str) -> Iterator[yaml.Node | None]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def _mark_error(path: str, exc: yaml.MarkedYAMLError) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line = int(mark.line) + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "invalid YAML"
    return SpecError(path, line, "", f"invalid YAML: {problem}")
